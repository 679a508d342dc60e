//! Identity in a real SQLCipher store: users, passwords, TOTP with persisted replay state,
//! lockouts of users and ports, and the audit events each of these writes.

use serde_json::Value;
use warden_core::audit::{AuditKey, ChainId};
use warden_core::password::{Password, PolicyViolation};
use warden_core::rbac::{Permission, Role};
use warden_core::secret::Key32;
use warden_core::totp::{Algorithm, Digits, KeyUri, TotpParams};
use warden_store::audit::{read_rows, AuditLog, AuditPolicy, StoredRow, VerifyFrom};
use warden_store::identity::{
    AuthError, AuthOutcome, AuthenticatedUser, Identity, IdentityError, IdentityPolicy, NewUser,
    PortId, Principal, SignInChannel, UnixMs, Username,
};
use warden_store::Database;

const DB_KEY: [u8; 32] = [7; 32];
const AUDIT_KEY: [u8; 32] = [9; 32];
const ADMIN_PW: &str = "Admin-Password-0001";
/// 2023-11-14T22:13:20Z, at the start of a 30 s step.
const T0: u64 = 1_700_000_010;

/// Fast Argon2id and no attempt spacing, unless a test asks for it.
fn fast_policy() -> IdentityPolicy {
    IdentityPolicy::from_json(
        r#"{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},
            "backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}"#,
    )
    .unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    k0: [u8; 32],
}

impl Env {
    fn new(policy: &IdentityPolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.db");
        let mut db = Database::create(&path, &Key32::from_bytes(DB_KEY)).unwrap();
        let k0 = [3u8; 32];
        AuditLog::new(Key32::from_bytes(AUDIT_KEY))
            .create(
                &mut db,
                AuditKey::from_bytes(k0),
                ChainId::random(),
                AuditPolicy::default(),
            )
            .unwrap();
        Identity::init(&mut db, policy).unwrap();
        let env = Self {
            _dir: dir,
            path,
            k0,
        };
        let (mut db, mut id) = env.open();
        id.create_first_admin(&mut db, &name("root"), &pw(ADMIN_PW), None, at(T0))
            .unwrap();
        env
    }

    /// A fresh connection and service, as a new process would have.
    fn open(&self) -> (Database, Identity) {
        let db = Database::open(&self.path, &Key32::from_bytes(DB_KEY)).unwrap();
        let id =
            Identity::load(&db, Key32::from_bytes(DB_KEY), Key32::from_bytes(AUDIT_KEY)).unwrap();
        (db, id)
    }

    fn admin(&self, db: &mut Database, id: &mut Identity, now: u64) -> AuthenticatedUser {
        id.authenticate_operator(db, "root", &pw(ADMIN_PW), None, at(now))
            .unwrap()
    }

    fn grant(
        &self,
        db: &mut Database,
        id: &mut Identity,
        permission: Permission,
    ) -> warden_store::identity::Authorized {
        let admin = self.admin(db, id, T0);
        id.require(db, &admin, permission, "test", at(T0)).unwrap()
    }

    /// Every audit row, and a check that the whole chain verifies from genesis.
    fn audit(&self) -> Vec<StoredRow> {
        let mut db = Database::open(&self.path, &Key32::from_bytes(DB_KEY)).unwrap();
        let verdict = AuditLog::new(Key32::from_bytes(AUDIT_KEY))
            .verify(
                &mut db,
                VerifyFrom::Genesis(AuditKey::from_bytes(self.k0)),
                None,
            )
            .unwrap();
        assert!(verdict.result.is_ok(), "the audit chain verifies");
        read_rows(&db, 1, None).unwrap()
    }
}

fn pw(text: &str) -> Password {
    Password::new(text.to_owned())
}

fn name(text: &str) -> Username {
    Username::parse(text).unwrap()
}

fn at(secs: u64) -> UnixMs {
    UnixMs(secs * 1000)
}

fn port() -> PortId {
    PortId::parse("shim-01").unwrap()
}

fn details(row: &StoredRow) -> Value {
    serde_json::from_str(&row.details).unwrap()
}

fn code_at(uri: &KeyUri, secs: u64) -> String {
    uri.params()
        .code_at(uri.secret(), secs)
        .expose_secret()
        .to_owned()
}

fn code_for_step(uri: &KeyUri, step: u64) -> String {
    uri.params()
        .code_for_step(uri.secret(), step)
        .expose_secret()
        .to_owned()
}

/// Adds technician `alice` and returns her enrollment.
fn technician(env: &Env) -> KeyUri {
    let (mut db, mut id) = env.open();
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    id.add_user(
        &mut db,
        &by,
        NewUser {
            username: &name("alice"),
            role: Role::Technician,
            password: None,
            totp: None,
        },
        at(T0),
    )
    .unwrap()
    .expect("technicians are enrolled at once")
}

/// Verifies: V28, V35
#[test]
fn first_admin_signs_in_and_every_step_is_audited() {
    let env = Env::new(&fast_policy());
    let (mut db, mut id) = env.open();
    let admin = env.admin(&mut db, &mut id, T0);
    assert_eq!(admin.username(), "root");
    assert_eq!(admin.role(), Role::Administrator);
    assert!(!admin.password_expired());
    // A second "first" administrator is refused.
    assert!(matches!(
        id.create_first_admin(&mut db, &name("eve"), &pw(ADMIN_PW), None, at(T0)),
        Err(IdentityError::AlreadyHasUsers)
    ));
    assert!(matches!(
        id.authenticate_operator(&mut db, "root", &pw("Wrong-Password-0001"), None, at(T0)),
        Err(AuthError::Failed)
    ));
    let rows = env.audit();
    let actions: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.actor.as_str(), r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("master-passphrase", "user.create", "success"),
            ("root", "login.cli", "success"),
            // A failed sign-in proves nobody: anonymous, the name tried is the subject.
            ("anonymous", "login.cli", "failure"),
        ]
    );
    assert_eq!(details(&rows[2])["reason"], "bad_password");
}

/// Verifies: S1, S2, S37, S46
#[test]
fn technician_codes_are_accepted_once_even_across_restarts() {
    let env = Env::new(&fast_policy());
    let uri = technician(&env);
    assert_eq!(uri.account(), "alice");
    assert_eq!(uri.issuer(), Some("warden"));
    assert_eq!(uri.secret().len(), 20, "160-bit secret");
    let now = T0 + 5;
    let code = code_at(&uri, now);
    let step = uri.params().time_step(now);
    {
        let (mut db, mut id) = env.open();
        assert_eq!(
            id.authenticate_technician(&mut db, "alice", code.as_bytes(), at(now), &port())
                .unwrap(),
            AuthOutcome::Accepted {
                username: "alice".into(),
                step
            }
        );
        // Same process, same code: a replay.
        assert!(matches!(
            id.authenticate_technician(&mut db, "Alice", code.as_bytes(), at(now + 1), &port())
                .unwrap(),
            AuthOutcome::Rejected { .. }
        ));
    }
    // A new process (new connection, new service): still a replay.
    let (mut db, mut id) = env.open();
    assert!(matches!(
        id.authenticate_technician(&mut db, "alice", code.as_bytes(), at(now + 2), &port())
            .unwrap(),
        AuthOutcome::Rejected { .. }
    ));
    let rows = env.audit();
    let logins: Vec<&StoredRow> = rows.iter().filter(|r| r.action == "login.totp").collect();
    assert_eq!(logins.len(), 3);
    assert_eq!(logins[0].outcome, "success");
    assert_eq!(logins[0].subject, "port:shim-01");
    assert_eq!(details(logins[0])["step"], step);
    for replay in &logins[1..] {
        assert_eq!(replay.outcome, "failure");
        assert_eq!(details(replay)["reason"], "totp_replay");
        assert_eq!(details(replay)["step"], step);
    }
}

/// Verifies: S2
#[test]
fn an_earlier_step_is_refused_after_a_later_one_was_accepted() {
    let env = Env::new(&fast_policy());
    let uri = technician(&env);
    let now = T0 + 40;
    let step = uri.params().time_step(now);
    let (mut db, mut id) = env.open();
    let next = code_for_step(&uri, step + 1);
    assert_eq!(
        id.authenticate_technician(&mut db, "alice", next.as_bytes(), at(now), &port())
            .unwrap(),
        AuthOutcome::Accepted {
            username: "alice".into(),
            step: step + 1
        }
    );
    for earlier in [step, step - 1] {
        let code = code_for_step(&uri, earlier);
        assert!(matches!(
            id.authenticate_technician(&mut db, "alice", code.as_bytes(), at(now), &port())
                .unwrap(),
            AuthOutcome::Rejected { .. }
        ));
    }
    let reasons: Vec<Value> = env
        .audit()
        .iter()
        .filter(|r| r.action == "login.totp" && r.outcome == "failure")
        .map(|r| details(r)["reason"].clone())
        .collect();
    assert_eq!(reasons, ["totp_replay", "totp_replay"]);
}

/// Verifies: S26, S27, V36
#[test]
fn five_failures_lock_user_and_port_until_an_administrator_unlocks() {
    let env = Env::new(&fast_policy());
    let uri = technician(&env);
    let (mut db, mut id) = env.open();
    let now = T0 + 100;
    for i in 0..4 {
        assert!(matches!(
            id.authenticate_technician(&mut db, "alice", b"000000", at(now + i), &port())
                .unwrap(),
            AuthOutcome::Rejected { .. }
        ));
    }
    assert_eq!(
        id.authenticate_technician(&mut db, "alice", b"000000", at(now + 4), &port())
            .unwrap(),
        AuthOutcome::LockedOut
    );
    // A correct code, later, in a new process: still locked.
    let later = now + 3600;
    let (mut db, mut id) = env.open();
    let good = code_at(&uri, later);
    assert_eq!(
        id.authenticate_technician(&mut db, "alice", good.as_bytes(), at(later), &port())
            .unwrap(),
        AuthOutcome::LockedOut
    );
    // An operator cannot unlock; the administrator's user.manage does not cover the port.
    let admin = env.admin(&mut db, &mut id, later);
    let user_manage = id
        .require(
            &mut db,
            &admin,
            Permission::UserManage,
            "user.unlock",
            at(later),
        )
        .unwrap();
    let port_principal = Principal::Port(port());
    assert!(matches!(
        id.unlock(&mut db, &user_manage, &port_principal, at(later)),
        Err(IdentityError::WrongAuthorization { .. })
    ));
    let shim_reset = id
        .require(
            &mut db,
            &admin,
            Permission::ShimReset,
            "shim.reset",
            at(later),
        )
        .unwrap();
    assert!(id
        .unlock(&mut db, &shim_reset, &port_principal, at(later))
        .unwrap());
    // The port is open again, but alice herself is still locked.
    assert!(matches!(
        id.authenticate_technician(&mut db, "alice", good.as_bytes(), at(later), &port())
            .unwrap(),
        AuthOutcome::Rejected { .. }
    ));
    assert!(id
        .unlock(
            &mut db,
            &user_manage,
            &Principal::User(name("alice")),
            at(later)
        )
        .unwrap());
    let good = code_at(&uri, later + 30);
    assert!(matches!(
        id.authenticate_technician(&mut db, "alice", good.as_bytes(), at(later + 30), &port())
            .unwrap(),
        AuthOutcome::Accepted { .. }
    ));

    let rows = env.audit();
    let locks: Vec<&str> = rows
        .iter()
        .filter(|r| r.action == "lockout.lock")
        .map(|r| r.subject.as_str())
        .collect();
    assert_eq!(locks, ["user:alice", "port:shim-01"]);
    let unlocks: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.action == "lockout.unlock")
        .map(|r| (r.actor.as_str(), r.subject.as_str()))
        .collect();
    assert_eq!(unlocks, [("root", "port:shim-01"), ("root", "user:alice")]);
    let locked_attempt = rows
        .iter()
        .find(|r| r.action == "login.totp" && details(r)["reason"] == "port_locked")
        .expect("the refused correct code is audited");
    assert_eq!(locked_attempt.actor, "anonymous");
    assert_eq!(details(locked_attempt)["user"], "user:alice");
    let while_user_locked = rows
        .iter()
        .find(|r| r.action == "login.totp" && details(r)["reason"] == "user_locked")
        .expect("the attempt while the user was locked is audited");
    assert_eq!(details(while_user_locked)["code"], "valid");
}

/// Verifies: V36, V42
#[test]
fn unknown_disabled_and_wrong_role_users_get_the_same_answer() {
    let env = Env::new(&fast_policy());
    let uri = technician(&env);
    let (mut db, mut id) = env.open();
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    let op_uri = id
        .add_user(
            &mut db,
            &by,
            NewUser {
                username: &name("olga"),
                role: Role::Operator,
                password: Some(&pw("Operator-Password-1")),
                totp: Some(TotpParams::default()),
            },
            at(T0),
        )
        .unwrap()
        .unwrap();
    let now = T0 + 200;
    let other_port = PortId::parse("shim-02").unwrap();
    // An operator's correct code does not open a shim session.
    let outcome = id
        .authenticate_technician(
            &mut db,
            "olga",
            code_at(&op_uri, now).as_bytes(),
            at(now),
            &other_port,
        )
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Rejected { retry_after_ms: 0 });
    let outcome = id
        .authenticate_technician(&mut db, "nobody", b"123456", at(now), &other_port)
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Rejected { retry_after_ms: 0 });
    let outcome = id
        .authenticate_technician(&mut db, "bad\u{1b}name", b"123456", at(now), &other_port)
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Rejected { retry_after_ms: 0 });
    id.set_disabled(&mut db, &by, &name("alice"), true, at(now))
        .unwrap();
    let outcome = id
        .authenticate_technician(
            &mut db,
            "alice",
            code_at(&uri, now).as_bytes(),
            at(now),
            &port(),
        )
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Rejected { retry_after_ms: 0 });
    let reasons: Vec<(String, Value)> = env
        .audit()
        .iter()
        .filter(|r| r.action == "login.totp")
        .map(|r| {
            assert_eq!(r.actor, "anonymous");
            (
                details(r)["user"].as_str().unwrap().to_owned(),
                details(r)["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(reasons[0], ("user:olga".into(), "role_not_allowed".into()));
    assert_eq!(reasons[1], ("user:nobody".into(), "unknown_user".into()));
    assert!(reasons[2].0.starts_with("user:invalid-name-"));
    assert_eq!(reasons[3], ("user:alice".into(), "disabled".into()));
    // Disabled users cannot use the CLI either, and the last administrator stays enabled.
    assert!(matches!(
        id.set_disabled(&mut db, &by, &name("root"), true, at(now)),
        Err(IdentityError::LastAdministrator(_))
    ));
    id.set_disabled(&mut db, &by, &name("olga"), true, at(now))
        .unwrap();
    assert!(matches!(
        id.authenticate_operator(
            &mut db,
            "olga",
            &pw("Operator-Password-1"),
            Some(&code_at(&op_uri, now + 30)),
            at(now + 30)
        ),
        Err(AuthError::Failed)
    ));
}

/// Verifies: V34
#[test]
fn operators_need_their_code_when_enrolled_and_it_is_replay_protected() {
    let env = Env::new(&fast_policy());
    let (mut db, mut id) = env.open();
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    let uri = id
        .add_user(
            &mut db,
            &by,
            NewUser {
                username: &name("ada"),
                role: Role::Auditor,
                password: Some(&pw("Auditor-Password-1")),
                totp: Some(TotpParams {
                    algorithm: Algorithm::Sha256,
                    digits: Digits::Eight,
                    ..TotpParams::default()
                }),
            },
            at(T0),
        )
        .unwrap()
        .unwrap();
    assert_eq!(uri.params().digits, Digits::Eight);
    let now = T0 + 300;
    let password = pw("Auditor-Password-1");
    // No code: asked for, not counted.
    assert!(matches!(
        id.authenticate_operator(&mut db, "ada", &password, None, at(now)),
        Err(AuthError::TotpRequired { .. })
    ));
    // A wrong password without a code gets the same answer: the code is asked for before the
    // password is looked at, so this answer is no uncounted password-guessing oracle.
    assert!(matches!(
        id.authenticate_operator(&mut db, "ada", &pw("Not-Her-Password-1"), None, at(now)),
        Err(AuthError::TotpRequired { .. })
    ));
    let code = code_at(&uri, now);
    let user = id
        .authenticate_operator(&mut db, "ada", &password, Some(&code), at(now))
        .unwrap();
    assert_eq!(user.totp_step(), Some(uri.params().time_step(now)));
    assert!(matches!(
        id.authenticate_operator(&mut db, "ada", &password, Some(&code), at(now + 1)),
        Err(AuthError::Failed)
    ));
    // Auditors may export the audit trail, not manage users; the denial is audited.
    assert!(id
        .require(
            &mut db,
            &user,
            Permission::AuditExport,
            "audit.export",
            at(now)
        )
        .is_ok());
    assert!(matches!(
        id.require(&mut db, &user, Permission::UserManage, "user.add", at(now)),
        Err(AuthError::Denied {
            permission: Permission::UserManage,
            ..
        })
    ));
    let rows = env.audit();
    let denied = rows.iter().find(|r| r.outcome == "denied").unwrap();
    assert_eq!(
        (denied.actor.as_str(), denied.action.as_str()),
        ("ada", "user.add.denied")
    );
    assert_eq!(details(denied)["permission"], "user.manage");
    let replay = rows
        .iter()
        .rev()
        .find(|r| r.action == "login.cli" && r.outcome == "failure")
        .unwrap();
    assert_eq!(details(replay)["reason"], "totp_replay");
}

/// Verifies: V36
#[test]
fn operator_lockout_refuses_the_right_password_until_unlocked() {
    let env = Env::new(&fast_policy());
    let (mut db, mut id) = env.open();
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    id.add_user(
        &mut db,
        &by,
        NewUser {
            username: &name("otto"),
            role: Role::Operator,
            password: Some(&pw("Operator-Password-1")),
            totp: None,
        },
        at(T0),
    )
    .unwrap();
    let now = T0 + 50;
    for i in 0..4 {
        assert!(matches!(
            id.authenticate_operator(&mut db, "otto", &pw("Wrong-Password-00"), None, at(now + i)),
            Err(AuthError::Failed)
        ));
    }
    assert!(matches!(
        id.authenticate_operator(&mut db, "otto", &pw("Wrong-Password-00"), None, at(now + 4)),
        Err(AuthError::LockedOut { .. })
    ));
    assert!(matches!(
        id.authenticate_operator(
            &mut db,
            "otto",
            &pw("Operator-Password-1"),
            None,
            at(now + 500)
        ),
        Err(AuthError::LockedOut { .. })
    ));
    assert!(
        id.lock_state(&db, &Principal::User(name("otto")), at(now + 500))
            .unwrap()
            .locked
    );
    id.unlock(&mut db, &by, &Principal::User(name("otto")), at(now + 600))
        .unwrap();
    id.authenticate_operator(
        &mut db,
        "otto",
        &pw("Operator-Password-1"),
        None,
        at(now + 601),
    )
    .unwrap();
    // Unknown names lock just the same, so lockouts tell nothing about which names exist.
    for i in 0..5 {
        let _ =
            id.authenticate_operator(&mut db, "ghost", &pw("Whatever-Pass-01"), None, at(now + i));
    }
    assert!(matches!(
        id.authenticate_operator(&mut db, "ghost", &pw("Whatever-Pass-01"), None, at(now + 9)),
        Err(AuthError::LockedOut { .. })
    ));
    // Those failures are not those of an account made later under that name: it starts
    // unlocked, and its creation says the name was locked.
    id.add_user(
        &mut db,
        &by,
        NewUser {
            username: &name("ghost"),
            role: Role::Operator,
            password: Some(&pw("Ghost-Password-01")),
            totp: None,
        },
        at(now + 10),
    )
    .unwrap();
    id.authenticate_operator(
        &mut db,
        "ghost",
        &pw("Ghost-Password-01"),
        None,
        at(now + 11),
    )
    .unwrap();
    drop(db);
    let created = env
        .audit()
        .into_iter()
        .rfind(|r| r.action == "user.create")
        .unwrap();
    assert_eq!(details(&created)["was_locked"], true);
}

/// Verifies: V36
#[test]
fn attempts_are_spaced_out_with_a_retry_time() {
    let policy = IdentityPolicy::from_json(
        r#"{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}}}"#,
    )
    .unwrap();
    let env = Env::new(&policy);
    let _uri = technician(&env);
    let (mut db, mut id) = env.open();
    let now = UnixMs(T0 * 1000 + 123);
    assert_eq!(
        id.authenticate_technician(&mut db, "alice", b"000000", now, &port())
            .unwrap(),
        AuthOutcome::Rejected {
            retry_after_ms: 1000
        }
    );
    assert_eq!(
        id.authenticate_technician(&mut db, "alice", b"000000", UnixMs(now.0 + 400), &port())
            .unwrap(),
        AuthOutcome::Rejected {
            retry_after_ms: 600
        }
    );
    // The refused-for-speed attempt was not counted: one failure so far.
    let state = id
        .lock_state(&db, &Principal::User(name("alice")), UnixMs(now.0 + 400))
        .unwrap();
    assert_eq!(state.recent_failures, 1);
    // CLI: a second try too soon is refused with the wait.
    let now = UnixMs(now.0 + 5_000);
    assert!(matches!(
        id.authenticate_operator(&mut db, "root", &pw("Wrong-Password-00"), None, now),
        Err(AuthError::Failed)
    ));
    match id.authenticate_operator(&mut db, "root", &pw(ADMIN_PW), None, UnixMs(now.0 + 10)) {
        Err(
            err @ AuthError::RateLimited {
                retry_after_ms: 990,
            },
        ) => {
            assert_eq!(
                err.to_string(),
                "too many attempts: wait 1.0 s before trying again"
            )
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

/// Verifies: V29, V30, V31, V73
#[test]
fn passwords_follow_the_policy_and_history() {
    let env = Env::new(&fast_policy());
    let (mut db, mut id) = env.open();
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    let Err(err) = id.add_user(
        &mut db,
        &by,
        NewUser {
            username: &name("weak"),
            role: Role::Operator,
            password: Some(&pw("short")),
            totp: None,
        },
        at(T0),
    ) else {
        panic!("a weak password was accepted");
    };
    let IdentityError::PolicyViolation(violations) = err else {
        panic!("expected a policy violation, got {err:?}");
    };
    assert!(violations
        .violations()
        .contains(&PolicyViolation::TooShort { min: 16 }));
    assert!(matches!(
        id.add_user(
            &mut db,
            &by,
            NewUser {
                username: &name("tech"),
                role: Role::Technician,
                password: Some(&pw("Operator-Password-1")),
                totp: None
            },
            at(T0)
        ),
        Err(IdentityError::TechnicianPassword)
    ));
    assert!(matches!(
        id.add_user(
            &mut db,
            &by,
            NewUser {
                username: &name("root"),
                role: Role::Operator,
                password: Some(&pw("Operator-Password-1")),
                totp: None
            },
            at(T0)
        ),
        Err(IdentityError::UserExists(_))
    ));

    // Five changes; any of the last five is refused, the sixth-oldest is allowed again.
    let admin = env.admin(&mut db, &mut id, T0);
    let passwords: Vec<String> = (1..=5)
        .map(|i| format!("Changed-Password-{i:02}"))
        .collect();
    for (i, new) in passwords.iter().enumerate() {
        id.change_own_password(&mut db, &admin, &pw(new), at(T0 + 10 + i as u64))
            .unwrap();
    }
    for old in passwords.iter().skip(1) {
        let err = id
            .change_own_password(&mut db, &admin, &pw(old), at(T0 + 100))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the password must not be the same as any of the last 5 passwords"
        );
    }
    id.change_own_password(&mut db, &admin, &pw(ADMIN_PW), at(T0 + 100))
        .unwrap();
    let rows = env.audit();
    let changes = rows.iter().filter(|r| r.action == "user.passwd").count();
    assert_eq!(changes, 6 + 4, "6 changes and 4 refusals");
}

/// Verifies: V32
#[test]
fn expired_passwords_sign_in_but_are_refused_every_permission() {
    let env = Env::new(&fast_policy());
    let (mut db, mut id) = env.open();
    let later = T0 + 91 * 86_400;
    let admin = env.admin(&mut db, &mut id, later);
    assert!(admin.password_expired());
    assert!(matches!(
        id.require(
            &mut db,
            &admin,
            Permission::UserManage,
            "user.list",
            at(later)
        ),
        Err(AuthError::PasswordExpired { .. })
    ));
    id.change_own_password(&mut db, &admin, &pw("Fresh-Password-001"), at(later))
        .unwrap();
    let admin = id
        .authenticate_operator(
            &mut db,
            "root",
            &pw("Fresh-Password-001"),
            None,
            at(later + 1),
        )
        .unwrap();
    assert!(id
        .require(
            &mut db,
            &admin,
            Permission::UserManage,
            "user.list",
            at(later + 1)
        )
        .is_ok());
}

#[test]
fn totp_secrets_are_sealed_and_bound_to_their_user() {
    let env = Env::new(&fast_policy());
    let uri = technician(&env);
    let (mut db, mut id) = env.open();
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    let bob = id
        .add_user(
            &mut db,
            &by,
            NewUser {
                username: &name("bob"),
                role: Role::Technician,
                password: None,
                totp: None,
            },
            at(T0),
        )
        .unwrap()
        .unwrap();
    let secret = uri.secret().expose_secret().to_vec();
    let sealed: Vec<u8> = db
        .conn()
        .query_row(
            "SELECT totp_sealed FROM users WHERE username = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
    // Copying alice's sealed secret into bob's row does not give bob her codes.
    db.conn()
        .execute(
            "UPDATE users SET totp_sealed = ?1 WHERE username = 'bob'",
            [&sealed],
        )
        .unwrap();
    let now = T0 + 400;
    let result = id.authenticate_technician(
        &mut db,
        "bob",
        code_at(&uri, now).as_bytes(),
        at(now),
        &port(),
    );
    assert!(result.is_err(), "a moved secret must not open");
    let _ = bob;
}

/// Verifies: V35, V73
#[test]
fn list_and_show_tell_roles_totp_and_locks_without_secrets() {
    let env = Env::new(&fast_policy());
    let _uri = technician(&env);
    let (mut db, mut id) = env.open();
    for i in 0..5 {
        let _ = id.authenticate_technician(&mut db, "alice", b"999999", at(T0 + i), &port());
    }
    let by = env.grant(&mut db, &mut id, Permission::UserManage);
    let (users, locks) = id.list_users(&mut db, &by, at(T0 + 10)).unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "root"]);
    let alice = &users[0];
    assert_eq!(alice.role, Role::Technician);
    assert!(!alice.has_password);
    assert!(alice.lock.locked);
    assert_eq!(alice.totp.as_ref().unwrap().algorithm, "SHA1");
    let root = id
        .user_info(&mut db, &by, &name("ROOT"), at(T0 + 10))
        .unwrap();
    assert_eq!(root.password_expires, Some(T0 + 90 * 86_400));
    let json = serde_json::to_string(&users).unwrap();
    assert!(!json.contains("argon2"), "{json}");
    let locked: Vec<String> = locks.into_iter().map(|l| l.principal).collect();
    assert_eq!(locked, ["port:shim-01", "user:alice"]);
    // Reading users is on the record too.
    let actions: Vec<String> = env.audit().into_iter().map(|r| r.action).collect();
    assert!(actions.ends_with(&["user.list".to_owned(), "user.show".to_owned()]));
}

/// Verifies: V66
#[test]
fn a_changed_hashing_policy_rehashes_at_the_next_sign_in() {
    let env = Env::new(&fast_policy());
    let (db, _) = env.open();
    let policy = IdentityPolicy::from_json(
        r#"{"password":{"argon2":{"memory_kib":16384,"iterations":1,"parallelism":1}},
            "backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}"#,
    )
    .unwrap();
    db.conn()
        .execute(
            "UPDATE identity_policy SET policy = ?1",
            [serde_json::to_string(&policy).unwrap()],
        )
        .unwrap();
    let (mut db, mut id) = env.open();
    env.admin(&mut db, &mut id, T0);
    let phc: String = db
        .conn()
        .query_row(
            "SELECT password_phc FROM users WHERE username = 'root'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=16384,t=1,p=1$"), "{phc}");
    env.admin(&mut db, &mut id, T0 + 1);
}

/// A dashboard session is re-checked before each privileged act: a user disabled since
/// signing in is refused, a changed role applies, and the dashboard's sign-ins are recorded
/// as `login.dashboard`.
#[test]
fn recheck_refuses_a_disabled_user_and_dashboard_sign_ins_are_named() {
    let env = Env::new(&fast_policy());
    let (mut db, mut id) = env.open();
    let manage = env.grant(&mut db, &mut id, Permission::UserManage);
    id.add_user(
        &mut db,
        &manage,
        NewUser {
            username: &name("olga"),
            role: Role::Operator,
            password: Some(&pw("Olga-Operator-Pass-1!")),
            totp: None,
        },
        at(T0),
    )
    .unwrap();
    let olga = id
        .authenticate_operator_at(
            &mut db,
            SignInChannel::Dashboard,
            "olga",
            &pw("Olga-Operator-Pass-1!"),
            None,
            at(T0 + 1),
        )
        .unwrap();
    let again = id.recheck(&db, &olga, at(T0 + 2)).unwrap();
    assert_eq!(again.role(), Role::Operator);
    id.set_disabled(&mut db, &manage, &name("olga"), true, at(T0 + 3))
        .unwrap();
    assert!(matches!(
        id.recheck(&db, &olga, at(T0 + 4)),
        Err(AuthError::Failed)
    ));
    let rows = env.audit();
    assert!(rows
        .iter()
        .any(|r| r.actor == "olga" && r.action == "login.dashboard" && r.outcome == "success"));
}
