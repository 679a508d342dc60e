//! Role-based access control: which of the four roles (seed 002, "Role-Based Access Control")
//! may do what.
//!
//! A user has one [`Role`]; every guarded action is a [`Permission`]; [`authorize`] answers with
//! a [`Decision`] the caller cannot silently drop. The grants are fixed in code, in one `match`,
//! so they are reviewed like code and cannot drift with configuration:
//!
//! The grant table, rendered by [`permission_table_markdown`], is in `docs/access-control.md`
//! (a test keeps the two identical). Daemons act as [`ServiceKind`] principals with their own,
//! smaller grants.
//!
//! Why, following the seed's table: a **Technician** services devices ("calibration only", no
//! PHI): a session through the shim, which is recorded, and calibration records. An
//! **Operator** runs the system day to day (full key access in the seed): vault files and OTA
//! scripts. An **Administrator** configures: users, keys, configuration, lockout resets; may
//! verify and watch the audit trail and replay sessions to troubleshoot. An **Auditor** reviews
//! (read-only key access in the seed): verifies and exports the audit trail and session
//! recordings and reads results and vault files, but changes nothing. Exporting evidence is the
//! auditor's alone, so whoever administers the system is not also the one who hands over the
//! record of it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::keyring::Purpose;

// Implements: V38, V39, V40, V41
/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Role {
    Technician,
    Operator,
    Administrator,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Self::Technician,
        Self::Operator,
        Self::Administrator,
        Self::Auditor,
    ];

    /// The lower-case name used in configuration, the store and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Technician => "technician",
            Self::Operator => "operator",
            Self::Administrator => "administrator",
            Self::Auditor => "auditor",
        }
    }

    /// Every permission this role has, in [`Permission::ALL`] order.
    pub fn permissions(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |permission| is_granted(self, *permission))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is not one of the four.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected technician, operator, administrator or auditor")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Case-insensitive, surrounding white space ignored: `Auditor`, ` ADMINISTRATOR `.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        Self::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownRole(trimmed.chars().take(40).collect()))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Role> for &'static str {
    fn from(role: Role) -> Self {
        role.name()
    }
}

/// An action that needs a role's permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Permission {
    /// Pass the shim's challenge and open a (recorded) session to a device's service port.
    ShimSessionAccess,
    /// Replay a session recording.
    RecordingPlay,
    /// Export a session recording (asciicast, JSON Lines, dump).
    RecordingExport,
    /// Verify the audit chain.
    AuditVerify,
    /// Export the audit trail (CSV, JSON Lines) with its verification result.
    AuditExport,
    /// Follow new audit events as they are written.
    AuditTail,
    /// Create, change, disable users; reset their passwords and TOTP enrollment.
    UserManage,
    /// Rotate purpose keys or the master passphrase.
    KeyRotate,
    /// Export key material (e.g. the sealed initial audit key).
    KeyExport,
    /// Clear a shim lockout or an emergency stop.
    ShimReset,
    /// Add, rotate or remove OTA PSK keys for cards.
    OtaKeyManage,
    /// Queue APDU scripts for cards.
    OtaScriptPush,
    /// Read script results and card events.
    OtaResultsView,
    /// Seal (encrypt) files into the vault.
    VaultSeal,
    /// Open (decrypt) vault files.
    VaultOpen,
    /// Seal configuration files.
    ConfigSeal,
    /// Open sealed configuration files.
    ConfigOpen,
    /// Check a sealed vault file's integrity without decrypting it anywhere.
    VaultVerify,
    /// List the shim's session recordings (who, when, how long, intact or not).
    RecordingList,
    /// Ask a shim daemon for its state.
    ShimStatus,
    /// Send a test event to the SIEM named in a configuration.
    SiemTest,
    /// Read the audit chain's latest checkpoint (to keep it off the box).
    AuditCheckpoint,
    /// Install or extend the clinical records' collection schema.
    RecordsSchema,
    /// Read records of `phi` and `treatment` collections (PHI fields stay sealed without
    /// `records.phi`).
    RecordsTreatmentRead,
    /// Create, update, delete and sign records of `phi` and `treatment` collections.
    RecordsTreatmentWrite,
    /// Obtain the `phi` key: read and write PHI fields in clear.
    RecordsPhi,
    /// Read records of `calibration` collections.
    RecordsCalibrationRead,
    /// Create, update, delete and sign records of `calibration` collections.
    RecordsCalibrationWrite,
    /// Read records of `configuration` collections.
    RecordsConfigurationRead,
    /// Create, update, delete and sign records of `configuration` collections.
    RecordsConfigurationWrite,
    /// Append an application's own events (`app.*`) to the audit chain.
    AppEvent,
}

impl Permission {
    pub const ALL: [Permission; 31] = [
        Self::ShimSessionAccess,
        Self::RecordingPlay,
        Self::RecordingExport,
        Self::AuditVerify,
        Self::AuditExport,
        Self::AuditTail,
        Self::UserManage,
        Self::KeyRotate,
        Self::KeyExport,
        Self::ShimReset,
        Self::OtaKeyManage,
        Self::OtaScriptPush,
        Self::OtaResultsView,
        Self::VaultSeal,
        Self::VaultOpen,
        Self::ConfigSeal,
        Self::ConfigOpen,
        Self::VaultVerify,
        Self::RecordingList,
        Self::ShimStatus,
        Self::SiemTest,
        Self::AuditCheckpoint,
        Self::RecordsSchema,
        Self::RecordsTreatmentRead,
        Self::RecordsTreatmentWrite,
        Self::RecordsPhi,
        Self::RecordsCalibrationRead,
        Self::RecordsCalibrationWrite,
        Self::RecordsConfigurationRead,
        Self::RecordsConfigurationWrite,
        Self::AppEvent,
    ];

    /// The dotted name used in audit events and messages, e.g. `audit.export`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ShimSessionAccess => "shim.session",
            Self::RecordingPlay => "recording.play",
            Self::RecordingExport => "recording.export",
            Self::AuditVerify => "audit.verify",
            Self::AuditExport => "audit.export",
            Self::AuditTail => "audit.tail",
            Self::UserManage => "user.manage",
            Self::KeyRotate => "key.rotate",
            Self::KeyExport => "key.export",
            Self::ShimReset => "shim.reset",
            Self::OtaKeyManage => "ota.key.manage",
            Self::OtaScriptPush => "ota.script.push",
            Self::OtaResultsView => "ota.results.view",
            Self::VaultSeal => "vault.seal",
            Self::VaultOpen => "vault.open",
            Self::ConfigSeal => "config.seal",
            Self::ConfigOpen => "config.open",
            Self::VaultVerify => "vault.verify",
            Self::RecordingList => "recording.list",
            Self::ShimStatus => "shim.status",
            Self::SiemTest => "siem.test",
            Self::AuditCheckpoint => "audit.checkpoint",
            Self::RecordsSchema => "records.schema",
            Self::RecordsTreatmentRead => "records.treatment.read",
            Self::RecordsTreatmentWrite => "records.treatment.write",
            Self::RecordsPhi => "records.phi",
            Self::RecordsCalibrationRead => "records.calibration.read",
            Self::RecordsCalibrationWrite => "records.calibration.write",
            Self::RecordsConfigurationRead => "records.configuration.read",
            Self::RecordsConfigurationWrite => "records.configuration.write",
            Self::AppEvent => "app.event",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A permission name that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?} (e.g. audit.export, user.manage)")]
pub struct UnknownPermission(String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        Self::ALL
            .into_iter()
            .find(|permission| permission.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownPermission(trimmed.chars().take(40).collect()))
    }
}

impl TryFrom<String> for Permission {
    type Error = UnknownPermission;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Permission> for &'static str {
    fn from(permission: Permission) -> Self {
        permission.name()
    }
}

/// Why access was denied; the message is fit for the person who asked and for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    #[error("the {role} role does not grant {permission}")]
    NotGranted { role: Role, permission: Permission },
    #[error("the {kind} service does not have {permission}")]
    ServiceNotGranted {
        kind: ServiceKind,
        permission: Permission,
    },
}

/// The answer to "may this role do this?".
#[must_use = "an access decision must be enforced"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { reason: DenyReason },
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }

    /// `Ok(())` to go ahead, or the reason to refuse, for use with `?`.
    pub fn into_result(self) -> Result<(), DenyReason> {
        match self {
            Self::Allow => Ok(()),
            Self::Deny { reason } => Err(reason),
        }
    }
}

impl Permission {
    /// The command that needs this permission, for the documentation table.
    pub fn commands(self) -> &'static str {
        match self {
            Self::ShimSessionAccess => "a session through the shim (TOTP at the serial port)",
            Self::RecordingPlay => "`session play`",
            Self::RecordingExport => "`session export`",
            Self::RecordingList => "`session list`",
            Self::AuditVerify => "`audit verify`, `records verify`",
            Self::AuditExport => "`audit export`, `records export`",
            Self::AuditTail => "`audit tail`",
            Self::AuditCheckpoint => "`audit checkpoint`",
            Self::UserManage => "`user add/list/show/disable/enable/unlock/policy`, others' `passwd` and `enroll-totp`, `records signer`",
            Self::KeyRotate => "`keys list/rotate/passphrase/service`",
            Self::KeyExport => "`keys recovery`",
            Self::ShimReset => "`shim reset` (carried out by the daemon)",
            Self::ShimStatus => "`shim status`",
            Self::OtaKeyManage => "`ota keys add/remove/import/list`",
            Self::OtaScriptPush => "`ota push`, a push from the OTA dashboard",
            Self::OtaResultsView => "`ota results`, `ota sessions`, signing in to the OTA dashboard",
            Self::VaultSeal => "`vault seal`",
            Self::VaultOpen => "`vault open`",
            Self::VaultVerify => "`vault verify`",
            Self::ConfigSeal => "`config seal`",
            Self::ConfigOpen => "`config open`",
            Self::SiemTest => "`siem test`",
            Self::RecordsSchema => "`records schema`",
            Self::RecordsTreatmentRead => "`records get/history/list` (phi, treatment)",
            Self::RecordsTreatmentWrite => "`records put/delete/sign` (phi, treatment)",
            Self::RecordsPhi => "PHI fields in clear (`records get/history/put/export`)",
            Self::RecordsCalibrationRead => "`records get/history/list` (calibration)",
            Self::RecordsCalibrationWrite => "`records put/delete/sign` (calibration)",
            Self::RecordsConfigurationRead => "`records get/history/list` (configuration)",
            Self::RecordsConfigurationWrite => "`records put/delete/sign` (configuration)",
            Self::AppEvent => "`records event` (an application's own events)",
        }
    }
}

/// The permission table of `docs/access-control.md`: one row per permission, one column per
/// role and per service.
pub fn permission_table_markdown() -> String {
    let mut out = String::from(
        "| permission | commands | technician | operator | administrator | auditor | shim daemon | ota server |\n\
         |---|---|:-:|:-:|:-:|:-:|:-:|:-:|\n",
    );
    let mark = |yes: bool| if yes { "✔" } else { "" };
    for permission in Permission::ALL {
        out.push_str(&format!("| `{permission}` | {} |", permission.commands()));
        for role in Role::ALL {
            out.push_str(&format!(" {} |", mark(is_granted(role, permission))));
        }
        for kind in ServiceKind::ALL {
            out.push_str(&format!(
                " {} |",
                mark(is_granted_to_service(kind, permission))
            ));
        }
        out.push('\n');
    }
    out
}

// Implements: V42
/// Decides whether `role` may exercise `permission`.
pub fn authorize(role: Role, permission: Permission) -> Decision {
    if is_granted(role, permission) {
        Decision::Allow
    } else {
        Decision::Deny {
            reason: DenyReason::NotGranted { role, permission },
        }
    }
}

/// The grant table of the module documentation. Exhaustive over permissions: a new permission
/// does not compile until someone decides who gets it.
fn is_granted(role: Role, permission: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match permission {
        ShimSessionAccess => matches!(role, Technician),
        RecordingPlay => matches!(role, Administrator | Auditor),
        RecordingExport => matches!(role, Auditor),
        AuditVerify => matches!(role, Administrator | Auditor),
        AuditExport => matches!(role, Auditor),
        AuditTail => matches!(role, Administrator | Auditor),
        UserManage => matches!(role, Administrator),
        KeyRotate => matches!(role, Administrator),
        KeyExport => matches!(role, Administrator),
        ShimReset => matches!(role, Administrator),
        OtaKeyManage => matches!(role, Administrator),
        OtaScriptPush => matches!(role, Operator | Administrator),
        OtaResultsView => matches!(role, Operator | Administrator | Auditor),
        VaultSeal => matches!(role, Operator | Administrator),
        VaultOpen => matches!(role, Operator | Administrator | Auditor),
        ConfigSeal => matches!(role, Administrator),
        ConfigOpen => matches!(role, Administrator),
        VaultVerify => matches!(role, Operator | Administrator | Auditor),
        RecordingList => matches!(role, Administrator | Auditor),
        ShimStatus => matches!(role, Operator | Administrator | Auditor),
        SiemTest => matches!(role, Administrator),
        AuditCheckpoint => matches!(role, Administrator | Auditor),
        // Clinical records (seed 002's roles): operators treat (PHI and treatments),
        // administrators configure, auditors read without changing, technicians calibrate.
        RecordsSchema => matches!(role, Administrator),
        RecordsTreatmentRead => matches!(role, Operator | Auditor),
        RecordsTreatmentWrite => matches!(role, Operator),
        RecordsPhi => matches!(role, Operator | Auditor),
        RecordsCalibrationRead => matches!(role, Technician | Operator | Administrator | Auditor),
        RecordsCalibrationWrite => matches!(role, Technician),
        RecordsConfigurationRead => matches!(role, Operator | Administrator | Auditor),
        RecordsConfigurationWrite => matches!(role, Administrator),
        AppEvent => matches!(role, Technician | Operator | Administrator),
    }
}

/// A daemon that acts as its own principal (it signs in with the keys it was started with,
/// not with a person's password). Its events name it as their actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// `warden shim run`: the serial MFA gate.
    ShimDaemon,
    /// `warden ota serve`: the SCP81 admin server.
    OtaServer,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 2] = [Self::ShimDaemon, Self::OtaServer];

    pub fn name(self) -> &'static str {
        match self {
            Self::ShimDaemon => "shim daemon",
            Self::OtaServer => "ota server",
        }
    }

    /// Every permission this service has, in [`Permission::ALL`] order.
    pub fn permissions(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |permission| is_granted_to_service(self, *permission))
    }
}

impl ServiceKind {
    /// The short name in key slots, service key files and systemd credentials: `shim`, `ota`.
    pub fn slot_name(self) -> &'static str {
        match self {
            Self::ShimDaemon => "shim",
            Self::OtaServer => "ota",
        }
    }

    pub fn from_slot_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.slot_name() == name)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decides whether a service may exercise `permission`.
pub fn authorize_service(kind: ServiceKind, permission: Permission) -> Decision {
    if is_granted_to_service(kind, permission) {
        Decision::Allow
    } else {
        Decision::Deny {
            reason: DenyReason::ServiceNotGranted { kind, permission },
        }
    }
}

/// What the daemons may do on their own: the shim carries out a reset an administrator asked
/// for. Everything else they do — reading their own sealed configuration with the key they
/// were started with (its SHA-256 is in their start event), recording sessions, delivering
/// queued scripts — is their job, audited under their name, not a permission.
fn is_granted_to_service(kind: ServiceKind, permission: Permission) -> bool {
    match kind {
        ServiceKind::ShimDaemon => matches!(permission, Permission::ShimReset),
        ServiceKind::OtaServer => false,
    }
}

/// The keys a role's key slot carries: the purposes its permissions need, and no other. The
/// crypto layer enforces it — a slot simply does not hold the keys its role lacks.
///
/// Everyone who signs in appends to the audit chain (their own sign-in, their acts), so every
/// role carries `database` and `audit`. Beyond that: **operators** seal and open vault files
/// (`recordings`) and read and write patients' PHI (`phi`); **auditors** open vault files,
/// replay and export recordings (`recordings`) and read PHI (`phi`), but read no configuration
/// and sign nothing; **administrators** carry every key: `config` (configuration is theirs
/// alone), `signing` (audit checkpoints), and `phi` because they make the slots of the people
/// who read it (the gate still refuses them `records.phi`).
/// **Technicians** have no password and therefore no slot: at the shim the daemon checks their
/// one-time codes with its own slot; at the CLI (calibration records) they get `database` and
/// `audit` from the master passphrase typed for them, never more.
pub fn role_key_purposes(role: Role) -> &'static [Purpose] {
    use Purpose::*;
    match role {
        Role::Technician => &[Database, Audit],
        Role::Operator => &[Database, Recordings, Audit, Phi],
        Role::Administrator => &[Database, Recordings, Config, Audit, Signing, Phi],
        Role::Auditor => &[Database, Recordings, Audit, Phi],
    }
}

/// The keys a daemon's service slot carries: the shim records sessions (`recordings`), reads its
/// sealed configuration (`config`), checks codes and writes the trail (`database`, `audit`) and
/// signs checkpoints (`signing`); the OTA server does the same without recordings.
pub fn service_key_purposes(kind: ServiceKind) -> &'static [Purpose] {
    use Purpose::*;
    match kind {
        ServiceKind::ShimDaemon => &[Database, Recordings, Config, Audit, Signing],
        ServiceKind::OtaServer => &[Database, Config, Audit, Signing],
    }
}

/// The key-access table of `docs/access-control.md`: one row per key, one column per role, per
/// service and for the master passphrase and the recovery key (which carry every key).
pub fn key_table_markdown() -> String {
    let mut out = String::from(
        "| key | technician | operator | administrator | auditor | shim daemon | ota server | master passphrase | recovery key |\n\
         |---|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|\n",
    );
    let mark = |yes: bool| if yes { "✔" } else { "" };
    for purpose in Purpose::IN_SLOTS {
        out.push_str(&format!("| `{purpose}` |"));
        for role in Role::ALL {
            out.push_str(&format!(
                " {} |",
                mark(role_key_purposes(role).contains(&purpose))
            ));
        }
        for kind in ServiceKind::ALL {
            out.push_str(&format!(
                " {} |",
                mark(service_key_purposes(kind).contains(&purpose))
            ));
        }
        out.push_str(" ✔ | ✔ |\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every permission a role holds is usable with the keys its slot carries (the keys a
    /// command needs after its sign-in), and no role carries a key none of its permissions
    /// needs.
    #[test]
    fn role_keys_follow_the_permissions() {
        fn needs(permission: Permission) -> &'static [Purpose] {
            use Permission::*;
            use Purpose::*;
            match permission {
                ShimSessionAccess => &[],
                RecordingPlay | RecordingExport | RecordingList | VaultSeal | VaultOpen
                | VaultVerify => &[Recordings],
                ConfigSeal | ConfigOpen | SiemTest => &[Config],
                // A recovery key's slot and a rotation's new wraps carry every key.
                KeyRotate | KeyExport => &Purpose::IN_SLOTS,
                RecordsPhi => &[Phi],
                _ => &[],
            }
        }
        for role in Role::ALL {
            let carried = role_key_purposes(role);
            let mut needed: Vec<Purpose> = Vec::new();
            for permission in role.permissions() {
                needed.extend(needs(permission));
            }
            // Every sign-in reads the database and writes the trail.
            needed.extend([Purpose::Database, Purpose::Audit]);
            if role == Role::Administrator {
                needed.push(Purpose::Signing);
            }
            for purpose in &needed {
                assert!(carried.contains(purpose), "{role} needs {purpose}");
            }
            for purpose in carried {
                assert!(
                    needed.contains(purpose),
                    "{role} carries {purpose} needlessly"
                );
            }
        }
        assert_eq!(
            role_key_purposes(Role::Technician),
            [Purpose::Database, Purpose::Audit]
        );

        assert!(!role_key_purposes(Role::Auditor).contains(&Purpose::Config));
        assert!(!role_key_purposes(Role::Auditor).contains(&Purpose::Signing));
    }

    /// The section of docs/access-control.md between `begin` and `end`; with
    /// `WARDEN_WRITE_DOCS=1` it is first rewritten from `table`.
    fn documented(begin: &str, end: &str, table: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/access-control.md");
        let mut doc = std::fs::read_to_string(path).expect("docs/access-control.md");
        let start = doc.find(begin).expect("the begin marker") + begin.len();
        let stop = doc[start..].find(end).expect("the end marker") + start;
        if std::env::var_os("WARDEN_WRITE_DOCS").is_some() {
            doc.replace_range(start..stop, table);
            std::fs::write(path, &doc).unwrap();
            return table.to_owned();
        }
        doc[start..stop].to_owned()
    }

    #[test]
    fn the_documented_key_table_is_the_code_s() {
        let table = key_table_markdown();
        assert_eq!(
            documented(
                "<!-- key-table: generated from crates/warden-core/src/rbac.rs -->\n",
                "<!-- end of key-table -->",
                &table
            ),
            table,
            "regenerate the table in docs/access-control.md from key_table_markdown()"
        );
    }

    /// The whole matrix, written out again independently of `is_granted`:
    /// (permission, technician, operator, administrator, auditor).
    const MATRIX: [(Permission, bool, bool, bool, bool); 31] = {
        use Permission::*;
        const Y: bool = true;
        const N: bool = false;
        [
            (ShimSessionAccess, Y, N, N, N),
            (RecordingPlay, N, N, Y, Y),
            (RecordingExport, N, N, N, Y),
            (AuditVerify, N, N, Y, Y),
            (AuditExport, N, N, N, Y),
            (AuditTail, N, N, Y, Y),
            (UserManage, N, N, Y, N),
            (KeyRotate, N, N, Y, N),
            (KeyExport, N, N, Y, N),
            (ShimReset, N, N, Y, N),
            (OtaKeyManage, N, N, Y, N),
            (OtaScriptPush, N, Y, Y, N),
            (OtaResultsView, N, Y, Y, Y),
            (VaultSeal, N, Y, Y, N),
            (VaultOpen, N, Y, Y, Y),
            (ConfigSeal, N, N, Y, N),
            (ConfigOpen, N, N, Y, N),
            (VaultVerify, N, Y, Y, Y),
            (RecordingList, N, N, Y, Y),
            (ShimStatus, N, Y, Y, Y),
            (SiemTest, N, N, Y, N),
            (AuditCheckpoint, N, N, Y, Y),
            (RecordsSchema, N, N, Y, N),
            (RecordsTreatmentRead, N, Y, N, Y),
            (RecordsTreatmentWrite, N, Y, N, N),
            (RecordsPhi, N, Y, N, Y),
            (RecordsCalibrationRead, Y, Y, Y, Y),
            (RecordsCalibrationWrite, Y, N, N, N),
            (RecordsConfigurationRead, N, Y, Y, Y),
            (RecordsConfigurationWrite, N, N, Y, N),
            (AppEvent, Y, Y, Y, N),
        ]
    };

    /// Verifies: V39, V40, V41, V42
    #[test]
    fn the_full_matrix() {
        for (permission, technician, operator, administrator, auditor) in MATRIX {
            for (role, expected) in [
                (Role::Technician, technician),
                (Role::Operator, operator),
                (Role::Administrator, administrator),
                (Role::Auditor, auditor),
            ] {
                let decision = authorize(role, permission);
                if expected {
                    assert_eq!(decision, Decision::Allow, "{role} {permission}");
                } else {
                    assert_eq!(
                        decision,
                        Decision::Deny {
                            reason: DenyReason::NotGranted { role, permission }
                        },
                        "{role} {permission}"
                    );
                }
            }
        }
        // The test table covers every permission exactly once.
        let listed: Vec<Permission> = MATRIX.iter().map(|row| row.0).collect();
        assert_eq!(listed, Permission::ALL);
    }

    #[test]
    fn examples_from_the_design() {
        assert!(!authorize(Role::Technician, Permission::AuditExport).is_allowed());
        assert!(!authorize(Role::Auditor, Permission::UserManage).is_allowed());
        assert!(authorize(Role::Technician, Permission::ShimSessionAccess).is_allowed());
        assert!(!authorize(Role::Administrator, Permission::ShimSessionAccess).is_allowed());
    }

    #[test]
    fn services_get_only_what_their_daemon_needs() {
        assert_eq!(
            ServiceKind::ShimDaemon.permissions().collect::<Vec<_>>(),
            [Permission::ShimReset]
        );
        assert_eq!(ServiceKind::OtaServer.permissions().count(), 0);
        assert_eq!(
            authorize_service(ServiceKind::OtaServer, Permission::OtaScriptPush),
            Decision::Deny {
                reason: DenyReason::ServiceNotGranted {
                    kind: ServiceKind::OtaServer,
                    permission: Permission::OtaScriptPush
                }
            }
        );
    }

    /// docs/access-control.md carries the table this module renders, between markers; the two
    /// cannot disagree.
    #[test]
    fn the_documented_permission_table_is_the_code_s() {
        let table = permission_table_markdown();
        assert_eq!(
            documented(
                "<!-- permission-table: generated from crates/warden-core/src/rbac.rs -->\n",
                "<!-- end of permission-table -->",
                &table
            ),
            table,
            "regenerate the table in docs/access-control.md from permission_table_markdown()"
        );
    }

    /// Verifies: V41
    #[test]
    fn technicians_get_the_shim_session_and_calibration_only() {
        assert_eq!(
            Role::Technician.permissions().collect::<Vec<_>>(),
            [
                Permission::ShimSessionAccess,
                Permission::RecordsCalibrationRead,
                Permission::RecordsCalibrationWrite,
                Permission::AppEvent,
            ]
        );
    }

    #[test]
    fn denial_reads_well_and_works_with_question_mark() {
        let decision = authorize(Role::Auditor, Permission::UserManage);
        let err = decision.into_result().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the auditor role does not grant user.manage"
        );
        assert_eq!(
            authorize(Role::Auditor, Permission::AuditExport).into_result(),
            Ok(())
        );
    }

    #[test]
    fn roles_parse_case_insensitively() {
        for (text, role) in [
            ("technician", Role::Technician),
            ("Operator", Role::Operator),
            ("ADMINISTRATOR", Role::Administrator),
            (" auditor\n", Role::Auditor),
        ] {
            assert_eq!(text.parse::<Role>(), Ok(role), "{text:?}");
        }
        let err = "admin".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role \"admin\": expected technician, operator, administrator or auditor"
        );
        assert!("".parse::<Role>().is_err());
        let long = "x".repeat(1000).parse::<Role>().unwrap_err().to_string();
        assert!(long.len() < 150, "{long}");
    }

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.name()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert_eq!(
            serde_json::from_str::<Role>("\"Auditor\"").unwrap(),
            Role::Auditor
        );
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
        for permission in Permission::ALL {
            assert_eq!(permission.name().parse::<Permission>(), Ok(permission));
            let json = serde_json::to_string(&permission).unwrap();
            assert_eq!(
                serde_json::from_str::<Permission>(&json).unwrap(),
                permission
            );
        }
        assert!("audit.delete".parse::<Permission>().is_err());
    }
}
