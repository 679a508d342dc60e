//! What one shim sign-in costs end to end in the store: `authenticate_technician` for a fresh,
//! correct code — lockout rows for user and port, the user row, opening the sealed secret,
//! TOTP verification, the compare-and-set of the replay state, one audit event, and a
//! `synchronous = FULL` commit. Run in `$WARDEN_BENCH_DIR` (default: the system temp dir);
//! the file system there decides most of the time (fsync).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use warden_core::audit::{AuditKey, ChainId};
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role};
use warden_core::secret::Key32;
use warden_store::audit::{AuditLog, AuditPolicy};
use warden_store::identity::{
    AuthOutcome, Identity, IdentityPolicy, NewUser, PortId, UnixMs, Username,
};
use warden_store::Database;

fn technician_sign_in(c: &mut Criterion) {
    let base = std::env::var_os("WARDEN_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let path = dir.path().join("warden.db");
    let key = || Key32::from_bytes([7; 32]);
    let audit_key = || Key32::from_bytes([9; 32]);
    let mut db = Database::create(&path, &key()).unwrap();
    AuditLog::new(audit_key())
        .create(
            &mut db,
            AuditKey::random(),
            ChainId::random(),
            AuditPolicy::default(),
        )
        .unwrap();
    let policy = IdentityPolicy::from_json(
        r#"{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},
            "backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}"#,
    )
    .unwrap();
    Identity::init(&mut db, &policy).unwrap();
    let mut id = Identity::load(&db, key(), audit_key()).unwrap();
    let admin = Username::parse("root").unwrap();
    let password = Password::new("Bench-Admin-Password-1".into());
    let t0 = 1_700_000_000u64;
    id.create_first_admin(&mut db, &admin, &password, None, UnixMs(t0 * 1000))
        .unwrap();
    let user = id
        .authenticate_operator(&mut db, "root", &password, None, UnixMs(t0 * 1000))
        .unwrap();
    let by = id
        .require(
            &mut db,
            &user,
            Permission::UserManage,
            "bench",
            UnixMs(t0 * 1000),
        )
        .unwrap();
    let uri = id
        .add_user(
            &mut db,
            &by,
            NewUser {
                username: &Username::parse("alice").unwrap(),
                role: Role::Technician,
                password: None,
                totp: None,
            },
            UnixMs(t0 * 1000),
        )
        .unwrap()
        .unwrap();
    let port = PortId::parse("shim-01").unwrap();
    let mut now = t0;
    c.bench_function("authenticate_technician_accept", |b| {
        b.iter_batched(
            || {
                // Each sign-in one period later, so every code is fresh.
                now += 30;
                let code = uri.params().code_at(uri.secret(), now);
                (now, code.expose_secret().to_owned())
            },
            |(at, code)| {
                let outcome = id
                    .authenticate_technician(
                        &mut db,
                        "alice",
                        code.as_bytes(),
                        UnixMs(at * 1000),
                        &port,
                    )
                    .unwrap();
                assert!(matches!(outcome, AuthOutcome::Accepted { .. }));
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, technician_sign_in);
criterion_main!(benches);
