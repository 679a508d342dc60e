//! Shared support for the `warden` binary's integration tests: a throwaway data directory
//! initialized through the real binary, helpers to run commands and read their results, and
//! the Python interpreter used by the interop tests.
//!
//! Each test file includes this with `mod support;`, and none uses every helper.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use warden_core::datadir::DataDir;
use warden_core::keyring::Purpose;
use warden_core::secret::{Key32, Passphrase};

/// The passphrase of every fixture unless a test picks another.
pub const PASSPHRASE: &str = "interop test passphrase: correct horse battery staple";

/// The auditor's passphrase for the fixture's exported initial audit key.
pub const AUDITOR_PASSPHRASE: &str = "auditor test passphrase: tr0ub4dor&3 is long";

/// A test identity policy: cheap Argon2id and no spacing between sign-ins (tests sign in several
/// times a second). Give it to `Fixture::with_identity_policy`.
pub const FAST_IDENTITY_POLICY: &str = r#"{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},
    "backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}"#;

/// Fast PBKDF2 for tests (the minimum warden accepts).
pub const KDF_ITERATIONS: &str = "1000";

/// The first administrator every fixture's `warden init` creates, and the password file name.
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "Fixture-Admin-Password-1";
const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// The operator and the auditor `Fixture::new` adds (password files `NAME-password`).
pub const OPERATOR: &str = "olga";
pub const AUDITOR: &str = "audra";
const USER_PASSWORD: &str = "Fixture-User-Password-2";
const AUDITOR_PASSPHRASE_FILE: &str = "auditor-passphrase";
const RECOVERY_KEY_FILE: &str = "recovery-key";

/// Environment variables that would change how the binary finds its data, passphrase, acting
/// user or passwords.
const HERMETIC_ENV: [&str; 9] = [
    "WARDEN_PASSPHRASE",
    "WARDEN_AUDITOR_PASSPHRASE",
    "WARDEN_DATA_DIR",
    "WARDEN_LOG",
    "CREDENTIALS_DIRECTORY",
    "RUST_LOG",
    "WARDEN_USER",
    "WARDEN_PASSWORD",
    "WARDEN_NEW_PASSWORD",
];

/// `init --kdf-iterations 1000 --admin admin --admin-password-file DIR/admin-password`: the
/// arguments of a test `warden init`, with the administrator's password file written into `dir`
/// (once) so the command needs no terminal.
pub fn init_args(dir: &Path) -> Vec<std::ffi::OsString> {
    let file = dir.join(ADMIN_PASSWORD_FILE);
    if !file.exists() {
        write_private(&file, format!("{ADMIN_PASSWORD}\n").as_bytes());
    }
    let auditor = dir.join(AUDITOR_PASSPHRASE_FILE);
    if !auditor.exists() {
        write_private(&auditor, format!("{AUDITOR_PASSPHRASE}\n").as_bytes());
    }
    let mut recovery = dir.join(RECOVERY_KEY_FILE);
    let mut n = 1;
    while recovery.exists() {
        n += 1;
        recovery = dir.join(format!("{RECOVERY_KEY_FILE}-{n}"));
    }
    ["--auditor-passphrase-file".into(), auditor.into_os_string()]
        .into_iter()
        .chain(
            [
                "init",
                "--recovery-key-out",
                recovery.to_str().expect("UTF-8 temporary path"),
                "--kdf-iterations",
                KDF_ITERATIONS,
                "--admin",
                ADMIN,
                "--admin-password-file",
            ]
            .into_iter()
            .map(Into::into),
        )
        .chain([file.into_os_string()])
        .collect()
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/warden sits two levels below the repository root")
        .to_path_buf()
}

/// The `warden` binary under test, with an environment that cannot leak in from the caller.
pub fn warden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    for var in HERMETIC_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Writes `content` to a new file with mode 0600.
pub fn write_private(path: &Path, content: &[u8]) {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(content).unwrap();
}

/// Rewrites `keyslots.json` at `path` as `change` leaves it, with a digest that matches (an
/// edit made by someone who knows the format, unlike damage): what is checked after the
/// digest is what gets tested.
pub fn rewrite_keyslots(path: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    change(&mut doc);
    doc["digest"] = warden_core::keyslots::DIGEST_PLACEHOLDER.into();
    let text = warden_core::keyslots::seal_digest(&serde_json::to_string_pretty(&doc).unwrap());
    std::fs::remove_file(path).unwrap();
    write_private(path, text.as_bytes());
}

/// Deterministic, incompressible-looking test data (xorshift), so failures are reproducible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sealed-stream layout constants, from `docs/formats/sealed-stream.md`.
pub const HEADER_LEN: usize = 107;
pub const FRAME_HEADER_LEN: usize = 9;
pub const TAG_LEN: usize = 16;

/// Splits a well-formed sealed stream into its header and whole frames, per the format
/// document (each frame's length is at bytes 5..9 of its frame header), to rearrange them.
pub fn split_frames(data: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < data.len() {
        let len = u32::from_be_bytes(data[pos + 5..pos + 9].try_into().unwrap()) as usize;
        let end = pos + FRAME_HEADER_LEN + len + TAG_LEN;
        frames.push(data[pos..end].to_vec());
        pos = end;
    }
    (data[..HEADER_LEN].to_vec(), frames)
}

/// A header followed by frames.
pub fn join(header: &[u8], frames: &[&[u8]]) -> Vec<u8> {
    let mut out = header.to_vec();
    for frame in frames {
        out.extend_from_slice(frame);
    }
    out
}

/// What a finished command did.
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    what: String,
}

impl Run {
    fn from_output(what: String, out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts the exit status, showing the command and its standard error when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "`{}` exited {} (expected {code})\n--- stderr:\n{}\n--- stdout:\n{}",
            self.what,
            self.code,
            self.stderr,
            String::from_utf8_lossy(&self.stdout)
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// Asserts that standard error contains every one of `needles` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        let haystack = self.stderr.to_lowercase();
        for needle in needles {
            assert!(
                haystack.contains(&needle.to_lowercase()),
                "`{}`: standard error does not mention {needle:?}:\n{}",
                self.what,
                self.stderr
            );
        }
        self
    }
}

fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{program} {}", args.join(" "))
}

/// Runs `cmd` to completion with no standard input.
pub fn run(cmd: &mut Command) -> Run {
    let what = describe(cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    Run::from_output(what, out)
}

/// Runs `cmd` to completion with `input` on its standard input.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Run {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    // Write from another thread: the child may fill its stdout pipe before reading all input.
    let writer = std::thread::spawn(move || {
        // A child that exits early (e.g. on a wrong passphrase) closes the pipe; that is fine.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for child");
    writer.join().expect("stdin writer");
    Run::from_output(what, out)
}

/// A data directory initialized by the real `warden init` in a temporary directory, with a
/// 0600 passphrase file next to it. Everything is removed when the fixture is dropped.
pub struct Fixture {
    tmp: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub passphrase_file: PathBuf,
    pub passphrase: String,
    pub auditor_passphrase_file: PathBuf,
}

impl Fixture {
    /// A data directory with the fast test identity policy, the administrator `admin`, an
    /// operator `olga` and an auditor `audra`.
    pub fn new() -> Self {
        Self::with_passphrase(PASSPHRASE)
    }

    pub fn with_passphrase(passphrase: &str) -> Self {
        let fixture = Self::with_options(passphrase, Some(FAST_IDENTITY_POLICY));
        for (name, role) in [(OPERATOR, "operator"), (AUDITOR, "auditor")] {
            let file = fixture.file(
                &format!("{name}-password"),
                format!("{USER_PASSWORD}\n").as_bytes(),
            );
            run(fixture
                .admin()
                .args(["user", "add", name, "--role", role, "--new-password-file"])
                .arg(file))
            .ok();
        }
        fixture
    }

    /// A fixture whose `warden init` is given this identity policy (JSON), with only the
    /// first administrator.
    pub fn with_identity_policy(policy_json: &str) -> Self {
        Self::with_options(PASSPHRASE, Some(policy_json))
    }

    fn with_options(passphrase: &str, policy_json: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let data_dir = tmp.path().join("data");
        let passphrase_file = tmp.path().join("passphrase");
        write_private(&passphrase_file, format!("{passphrase}\n").as_bytes());
        let auditor_passphrase_file = tmp.path().join("auditor-passphrase");
        write_private(
            &auditor_passphrase_file,
            format!("{AUDITOR_PASSPHRASE}\n").as_bytes(),
        );
        let fixture = Self {
            tmp,
            data_dir,
            passphrase_file,
            passphrase: passphrase.to_string(),
            auditor_passphrase_file,
        };
        let mut init = fixture.warden();
        init.args(init_args(fixture.dir()));
        if let Some(json) = policy_json {
            let path = fixture.file("identity-policy.json", json.as_bytes());
            init.arg("--identity-policy").arg(path);
        }
        run(&mut init).ok();
        fixture
    }

    /// The first administrator's 0600 password file.
    pub fn admin_password_file(&self) -> PathBuf {
        self.path(ADMIN_PASSWORD_FILE)
    }

    /// `warden … --as admin --password-file FILE`: signed in as the first administrator
    /// (put the subcommand before calling this).
    pub fn as_admin<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.args(["--as", ADMIN, "--password-file"])
            .arg(self.admin_password_file())
    }

    /// `warden …` signed in as `name` (whose password file is `NAME-password`, or the
    /// administrator's).
    pub fn warden_as(&self, name: &str) -> Command {
        let mut cmd = self.warden();
        let file = if name == ADMIN {
            self.admin_password_file()
        } else {
            self.path(&format!("{name}-password"))
        };
        cmd.args(["--as", name, "--password-file"]).arg(file);
        cmd
    }

    /// `warden …` signed in as the administrator.
    pub fn admin(&self) -> Command {
        self.warden_as(ADMIN)
    }

    /// `warden …` signed in as the operator `olga`.
    pub fn operator(&self) -> Command {
        self.warden_as(OPERATOR)
    }

    /// `warden …` signed in as the auditor `audra`.
    pub fn auditor(&self) -> Command {
        self.warden_as(AUDITOR)
    }

    /// The auditor's sealed initial audit key written by `init`.
    pub fn auditor_key(&self) -> PathBuf {
        self.data_dir.join("auditor-key.json")
    }

    /// The temporary directory that holds the data directory; put test files here.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// A path in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a test file (mode 0600) and returns its path.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.path(name);
        write_private(&path, content);
        path
    }

    /// `warden --data-dir DIR --passphrase-file FILE`.
    pub fn warden(&self) -> Command {
        let mut cmd = self.warden_without_passphrase();
        cmd.arg("--passphrase-file").arg(&self.passphrase_file);
        cmd
    }

    /// `warden --data-dir DIR`, for tests that supply the passphrase another way.
    pub fn warden_without_passphrase(&self) -> Command {
        let mut cmd = warden();
        cmd.arg("--data-dir").arg(&self.data_dir);
        cmd
    }

    /// [`Fixture::warden_without_passphrase`] signed in as the administrator.
    pub fn admin_without_passphrase(&self) -> Command {
        let mut cmd = self.warden_without_passphrase();
        cmd.args(["--as", ADMIN, "--password-file"])
            .arg(self.admin_password_file());
        cmd
    }

    /// The current purpose key, unwrapped in-process with warden-core from the master slot (to
    /// compare with other implementations and to look for in output that must not contain it).
    pub fn key(&self, purpose: Purpose) -> Key32 {
        DataDir::open(&self.data_dir)
            .expect("open the fixture's data directory")
            .master_keys(&Passphrase::new(self.passphrase.clone()))
            .expect("unlock with the fixture's passphrase")
            .get(purpose)
            .clone()
    }

    /// The fixture's database, opened with its `database` key (as anyone holding that key
    /// could, to look at rows or to change them behind warden's back).
    pub fn database(&self) -> warden_store::Database {
        warden_store::Database::open(
            &self.data_dir.join(warden_store::DB_FILE),
            &self.key(Purpose::Database),
        )
        .expect("open the fixture's database")
    }

    /// The recovery key file `init` wrote.
    pub fn recovery_key_file(&self) -> PathBuf {
        self.path(RECOVERY_KEY_FILE)
    }

    /// `warden vault seal IN OUT` of `content`; returns the sealed bytes.
    pub fn seal(&self, name: &str, content: &[u8]) -> Vec<u8> {
        let input = self.file(name, content);
        let output = self.path(&format!("{name}.sealed"));
        run(self
            .operator()
            .args(["vault", "seal"])
            .arg(&input)
            .arg(&output))
        .ok();
        std::fs::read(&output).unwrap()
    }
}

/// The Python interpreter for interop tests, known to import `cryptography`.
pub struct Python {
    pub exe: PathBuf,
}

/// Finds the interpreter: `$WARDEN_TEST_PYTHON`, else `.venv/bin/python3` at the repository
/// root if it exists, else `python3`; and checks that `cryptography` imports.
///
/// When it is not usable: with `CI=true` the test fails with the reason (a CI run must not
/// pass without running these checks); otherwise `SKIP: <reason>` goes to standard error and
/// the caller gets `None` and returns.
pub fn python() -> Option<Python> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PROBE.get_or_init(probe_python) {
        Ok(exe) => Some(Python { exe: exe.clone() }),
        Err(reason) => {
            let ci = std::env::var("CI")
                .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
                .unwrap_or(false);
            if ci {
                panic!(
                    "Python interop tests cannot run: {reason}\n\
                     Install the test requirements: python3 -m venv .venv && \
                     .venv/bin/pip install -r tests/python/requirements.txt \
                     (or set WARDEN_TEST_PYTHON to an interpreter that has them)"
                );
            }
            eprintln!("SKIP: {reason}");
            None
        }
    }
}

fn probe_python() -> Result<PathBuf, String> {
    let exe = match std::env::var_os("WARDEN_TEST_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let venv = repo_root().join(".venv/bin/python3");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        }
    };
    let out = Command::new(&exe)
        .args([
            "-c",
            "import cryptography, sys; \
             from cryptography.hazmat.primitives.ciphers.aead import AESGCM; \
             from cryptography.fernet import Fernet; \
             print(cryptography.__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run Python interpreter {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import the `cryptography` package: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(exe)
}

impl Python {
    /// `tests/python/<name>` in the repository.
    pub fn script_path(name: &str) -> PathBuf {
        repo_root().join("tests/python").join(name)
    }

    /// `python3 tests/python/<script> ARGS…`.
    pub fn script<I, S>(&self, script: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(Self::script_path(script)).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `python3 -c CODE ARGS…` with `tests/python` importable (sys.argv[1..] = ARGS).
    pub fn code<I, S>(&self, code: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("-c").arg(code).args(args);
        cmd.env("PYTHONPATH", repo_root().join("tests/python"));
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Derives a purpose key in Python (`tests/python/warden_keys.py`) from the fixture's
    /// passphrase file and security.json. `format` is `hex` or `fernet`.
    pub fn purpose_key(&self, fixture: &Fixture, purpose: Purpose, format: &str) -> String {
        let run = run(&mut self.script(
            "warden_keys.py",
            [
                fixture.data_dir.as_os_str(),
                OsStr::new(purpose.name()),
                OsStr::new("--passphrase-file"),
                fixture.passphrase_file.as_os_str(),
                OsStr::new("--format"),
                OsStr::new(format),
            ],
        ));
        run.ok();
        run.stdout_text().trim().to_string()
    }
}

/// A copy of `tests/fixtures/datadir-format1` (a data directory made by the release before key
/// slots: derived keys, `security.json`) in a temporary directory, with the modes warden
/// requires. Its passphrase, passwords and files are described in the fixture's README.
pub struct LegacyFixture {
    tmp: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub passphrase_file: PathBuf,
}

/// The plaintext of the fixture's `legacy-vault.sealed` and `legacy-config.sealed`.
pub const LEGACY_VAULT_PLAINTEXT: &[u8] = b"legacy vault content: laser 7, 12 J/cm2\n";
pub const LEGACY_CONFIG_PLAINTEXT: &[u8] = b"legacy: config\n";

impl LegacyFixture {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("temporary directory");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadir-format1");
        fn copy(from: &Path, to: &Path) {
            if from.is_dir() {
                std::fs::create_dir_all(to).unwrap();
                std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
                for entry in std::fs::read_dir(from).unwrap() {
                    let entry = entry.unwrap();
                    copy(&entry.path(), &to.join(entry.file_name()));
                }
            } else {
                std::fs::copy(from, to).unwrap();
                std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        copy(&source, tmp.path());
        std::fs::remove_file(tmp.path().join("README.md")).unwrap();
        for sub in ["heartbeats", "alerts"] {
            let dir = tmp.path().join("data").join(sub);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let data_dir = tmp.path().join("data");
        let passphrase_file = tmp.path().join("passphrase");
        Self {
            tmp,
            data_dir,
            passphrase_file,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn passphrase(&self) -> String {
        std::fs::read_to_string(&self.passphrase_file)
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// `warden --data-dir DIR` (no passphrase).
    pub fn warden_without_passphrase(&self) -> Command {
        let mut cmd = warden();
        cmd.arg("--data-dir").arg(&self.data_dir);
        cmd
    }

    /// `warden --data-dir DIR --passphrase-file FILE`.
    pub fn warden(&self) -> Command {
        let mut cmd = self.warden_without_passphrase();
        cmd.arg("--passphrase-file").arg(&self.passphrase_file);
        cmd
    }

    /// `cmd … --as NAME --password-file FILE` for `admin`, `olga` or `audra`.
    pub fn signed_in<'a>(&self, cmd: &'a mut Command, name: &str) -> &'a mut Command {
        let file = if name == ADMIN {
            self.path("admin-password")
        } else {
            self.path(&format!("{name}-password"))
        };
        cmd.args(["--as", name, "--password-file"]).arg(file)
    }
}

/// `warden ota serve` as a child process of a test, its standard error in the fixture's
/// directory.
#[allow(dead_code)]
pub struct OtaServer {
    child: std::process::Child,
    pub log: PathBuf,
}

#[allow(dead_code)]
impl OtaServer {
    /// Starts it on `config` (a plain file, allowed explicitly) and waits until it listens;
    /// `n` names its log (`server-N.log`).
    pub fn start(fx: &Fixture, config: &Path, n: usize) -> Self {
        let log = fx.path(&format!("server-{n}.log"));
        let child = fx
            .warden()
            .args(["ota", "serve", "--allow-plain-config", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Self { child, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !server.log_text().contains("listening") {
            assert!(
                std::time::Instant::now() < deadline && server.pid_alive(),
                "the OTA server did not start:\n{}",
                server.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid_alive(&self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), None).is_ok()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.child.wait().unwrap();
    }

    /// SIGTERM; it must exit 0.
    pub fn stop(mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}", self.log_text());
    }
}

impl Drop for OtaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
