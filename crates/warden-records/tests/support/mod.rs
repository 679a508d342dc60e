//! A store with the four roles signed in, for the records tests and benchmarks.
#![allow(dead_code)]

use warden_core::audit::{AuditKey, ChainId};
use warden_core::password::Password;
use warden_core::rbac::Role;
use warden_core::secret::Key32;
use warden_core::totp::KeyUri;
use warden_records::Session;
use warden_store::audit::{read_rows, AuditLog, AuditPolicy, StoredRow};
use warden_store::identity::{Identity, IdentityPolicy, NewUser, UnixMs, Username};
use warden_store::{Database, Store};

pub const DB_KEY: [u8; 32] = [7; 32];
pub const AUDIT_KEY: [u8; 32] = [9; 32];
pub const PHI_KEY: [u8; 32] = [11; 32];
pub const RECORDINGS_KEY: [u8; 32] = [13; 32];
pub const ADMIN_PW: &str = "Admin-Password-0001";
pub const OPERATOR_PW: &str = "Operator-Password-01";
pub const AUDITOR_PW: &str = "Auditor-Password-001";

pub const SCHEMA: &str = "
format: warden-records-schema
collections:
  patients:
    class: phi
    fields:
      mrn: { type: text, required: true }
      name: { type: text }
      dob: { type: date }
  treatments:
    class: treatment
    fields:
      patient: { type: text, required: true }
      wavelength_nm: { type: integer }
      energy_j: { type: number }
      parameters: { type: json }
      outcome: { type: text, phi: true }
      notes: { type: text, phi: true }
  calibrations:
    class: calibration
    fields:
      output_mw: { type: number, required: true }
      device: { type: text }
  settings:
    class: configuration
    fields:
      max_energy_j: { type: number }
";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
    pub operator_totp: KeyUri,
    pub technician_totp: KeyUri,
}

pub fn pw(text: &str) -> Password {
    Password::new(text.to_owned())
}

/// The current TOTP code `steps` steps away from now.
pub fn code(uri: &KeyUri, steps: i64) -> String {
    let now = UnixMs::now().secs() as i64;
    let step = (now / 30 + steps) as u64;
    uri.params()
        .code_for_step(uri.secret(), step)
        .expose_secret()
        .to_owned()
}

#[allow(clippy::new_without_default)]
impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.db");
        let mut db = Database::create(&path, &Key32::from_bytes(DB_KEY)).unwrap();
        AuditLog::new(Key32::from_bytes(AUDIT_KEY))
            .create(
                &mut db,
                AuditKey::from_bytes([3; 32]),
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
        drop(db);
        let mut env = Self {
            dir,
            path,
            operator_totp: KeyUri::parse(
                "otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
            )
            .unwrap(),
            technician_totp: KeyUri::parse(
                "otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
            )
            .unwrap(),
        };
        let mut store = env.store();
        let now = UnixMs::now();
        let root = Username::parse("root").unwrap();
        store
            .identity
            .create_first_admin(&mut store.db, &root, &pw(ADMIN_PW), None, now)
            .unwrap();
        let admin = store
            .identity
            .authenticate_operator(&mut store.db, "root", &pw(ADMIN_PW), None, now)
            .unwrap();
        let by = store
            .identity
            .require(
                &mut store.db,
                &admin,
                warden_core::rbac::Permission::UserManage,
                "user.add",
                now,
            )
            .unwrap();
        let totp = Some(store.identity.policy().totp);
        let mut add = |name: &str, role, password: Option<&Password>, totp| {
            store
                .identity
                .add_user(
                    &mut store.db,
                    &by,
                    NewUser {
                        username: &Username::parse(name).unwrap(),
                        role,
                        password,
                        totp,
                    },
                    now,
                )
                .unwrap()
        };
        env.operator_totp = add("olga", Role::Operator, Some(&pw(OPERATOR_PW)), totp).unwrap();
        add("audra", Role::Auditor, Some(&pw(AUDITOR_PW)), None);
        env.technician_totp = add("tess", Role::Technician, None, None).unwrap();
        let admin = env.session(&mut store, "root");
        admin
            .apply_schema(&mut store, SCHEMA, "schema.yaml")
            .unwrap();
        admin
            .set_printed_name(&mut store, "olga", "Olga Operator, MD")
            .unwrap();
        env
    }

    pub fn store(&self) -> Store {
        let db = Database::open(&self.path, &Key32::from_bytes(DB_KEY)).unwrap();
        let identity =
            Identity::load(&db, Key32::from_bytes(DB_KEY), Key32::from_bytes(AUDIT_KEY)).unwrap();
        Store { db, identity }
    }

    /// Signs `who` in (the operator with the previous step's code, so a signature can use the
    /// current one) and, where the role has it, unlocks the phi key.
    pub fn session(&self, store: &mut Store, who: &str) -> Session {
        let now = UnixMs::now();
        let user = match who {
            "root" => store.identity.authenticate_operator(
                &mut store.db,
                "root",
                &pw(ADMIN_PW),
                None,
                now,
            ),
            "olga" => store.identity.authenticate_operator(
                &mut store.db,
                "olga",
                &pw(OPERATOR_PW),
                Some(&code(&self.operator_totp, -1)),
                now,
            ),
            "audra" => store.identity.authenticate_operator(
                &mut store.db,
                "audra",
                &pw(AUDITOR_PW),
                None,
                now,
            ),
            "tess" => store.identity.authenticate_operator(
                &mut store.db,
                "tess",
                &pw(""),
                Some(&code(&self.technician_totp, 0)),
                now,
            ),
            other => panic!("no such test user {other}"),
        }
        .unwrap();
        let mut session = Session::new(user);
        if session.may(warden_core::rbac::Permission::RecordsPhi) {
            session
                .unlock_phi(store, Key32::from_bytes(PHI_KEY))
                .unwrap();
        }
        session
    }

    pub fn audit(&self) -> Vec<StoredRow> {
        read_rows(&self.store().db, 1, None).unwrap()
    }
}

pub fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().unwrap().clone()
}
