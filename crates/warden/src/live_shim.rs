//! A real shim running in this process between two PTY pairs, for `warden demo` and
//! `warden shim bench` (harness, not product logic): the same daemon and store-backed host as
//! `warden shim run`, driven from the technician's side as a laptop would.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_core::datadir::DataDir;
use warden_core::keyring::Purpose;
use warden_core::keyslots::KeyRing;
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role};
use warden_core::sealed_config::ConfigSealer;
use warden_core::totp::KeyUri;
use warden_shim::config::ShimConfig;
use warden_shim::daemon::ShutdownHandle;
use warden_shim::serial::VirtualSerialPair;
use warden_store::identity::{NewUser, UnixMs, Username};

use warden_shim::host::{build_daemon, DaemonKeys};

const WAIT: Duration = Duration::from_secs(20);

/// Adds a technician (TOTP enrolled at once) as the administrator `admin`; returns the
/// enrollment the technician's authenticator app would scan.
pub fn add_technician(
    dir: &DataDir,
    keys: &KeyRing,
    admin: &str,
    password: &Password,
    name: &str,
) -> Result<KeyUri> {
    let mut store = warden_store::Store::open(
        dir,
        keys.get(Purpose::Database).clone(),
        keys.get(Purpose::Audit).clone(),
    )?;
    let (identity, db) = (&mut store.identity, &mut store.db);
    // Sign-ins are spaced out by the identity policy: wait out the spacing once if needed.
    let signed_in = match identity.authenticate_operator(db, admin, password, None, UnixMs::now()) {
        Err(warden_store::identity::AuthError::RateLimited { retry_after_ms }) => {
            std::thread::sleep(Duration::from_millis(retry_after_ms + 50));
            identity.authenticate_operator(db, admin, password, None, UnixMs::now())?
        }
        other => other?,
    };
    let now = UnixMs::now();
    let by = identity.require(db, &signed_in, Permission::UserManage, "user.add", now)?;
    let username = Username::parse(name)?;
    identity
        .add_user(
            db,
            &by,
            NewUser {
                username: &username,
                role: Role::Technician,
                password: None,
                totp: None,
            },
            now,
        )?
        .context("technicians are enrolled at once")
}

/// The current code for an enrollment.
pub fn current_code(uri: &KeyUri) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    uri.params()
        .code_at(uri.secret(), now)
        .expose_secret()
        .to_string()
}

/// A running in-process shim.
pub struct LiveShim {
    pub tech: VirtualSerialPair,
    pub device: VirtualSerialPair,
    pub control_socket: std::path::PathBuf,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<Result<()>>>,
    _runtime: tokio::runtime::Runtime,
}

pub fn nonblocking(file: &std::fs::File) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(())
}

impl LiveShim {
    /// Starts a shim named `shim_id` with its control socket under `work`.
    pub fn start(dir: &DataDir, keys: &KeyRing, work: &Path, shim_id: &str) -> Result<Self> {
        let tech = VirtualSerialPair::new()?;
        let device = VirtualSerialPair::new()?;
        nonblocking(&tech.endpoint)?;
        nonblocking(&device.endpoint)?;
        let control_socket = work.join("shim.sock");
        let yaml = format!(
            "shim_id: {shim_id}\ndevice_name: empump-12\n\
             technician_port:\n  path: {}\n  baud: 115200\n\
             device_port:\n  path: {}\n  baud: 115200\n\
             control_socket: {}\nrecording:\n  flush_interval_ms: 200\n",
            tech.path.display(),
            device.path.display(),
            control_socket.display()
        );
        let config = ShimConfig::parse(&yaml)?;
        let daemon_keys = DaemonKeys {
            database: keys.get(Purpose::Database).clone(),
            audit: keys.get(Purpose::Audit).clone(),
            recordings: keys.get(Purpose::Recordings).clone(),
            config: ConfigSealer::new(keys.get(Purpose::Config)),
            signing: keys.current(Purpose::Signing).cloned(),
        };
        let (daemon, runtime) = build_daemon(config, yaml.as_bytes(), dir, daemon_keys)?;
        let stop = daemon.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("shim".into())
            .spawn(move || daemon.run(false).map_err(anyhow::Error::from))?;
        let mut shim = Self {
            tech,
            device,
            control_socket,
            stop,
            thread: Some(thread),
            _runtime: runtime,
        };
        if let Err(err) = shim.wait_state("IDLE") {
            // Say why the daemon did not come up, if it stopped.
            if let Some(thread) = shim.thread.take().filter(|t| t.is_finished()) {
                thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("the shim thread panicked"))??;
            }
            return Err(err);
        }
        Ok(shim)
    }

    pub fn state(&self) -> Option<String> {
        use warden_shim::daemon::control::{request, ControlRequest};
        request(&self.control_socket, &ControlRequest::Status)
            .ok()
            .map(|r| r.state)
    }

    pub fn wait_state(&self, state: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        while self.state().as_deref() != Some(state) {
            if Instant::now() > deadline {
                bail!("the shim never reached {state} (it is {:?})", self.state());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    pub fn type_tech(&mut self, bytes: &[u8]) -> Result<()> {
        self.tech.endpoint.write_all(bytes)?;
        Ok(())
    }

    /// Logs in at the prompt; returns the time from the code's Enter to "access granted".
    pub fn login(&mut self, technician: &str, code: &str) -> Result<Duration> {
        self.type_tech(b"\r")?;
        read_until(&mut self.tech.endpoint, b"technician id: ")?;
        self.type_tech(format!("{technician}\r").as_bytes())?;
        read_until(&mut self.tech.endpoint, b"one-time code: ")?;
        let started = Instant::now();
        self.type_tech(format!("{code}\r").as_bytes())?;
        let reply = read_until_any(
            &mut self.tech.endpoint,
            &[b"access granted", b"access denied", b"locked"],
        )?;
        let elapsed = started.elapsed();
        if !contains(&reply, b"access granted") {
            bail!("login refused: {}", String::from_utf8_lossy(&reply).trim());
        }
        self.wait_state("OPEN")?;
        Ok(elapsed)
    }

    /// Stops the daemon (closing an open session cleanly) and waits for it.
    pub fn stop(mut self) -> Result<()> {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the shim thread panicked"))??;
        }
        Ok(())
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn read_until(file: &mut std::fs::File, needle: &[u8]) -> Result<Vec<u8>> {
    read_until_any(file, &[needle])
}

fn read_until_any(file: &mut std::fs::File, needles: &[&[u8]]) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        if needles.iter().any(|n| contains(&got, n)) {
            return Ok(got);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting; got {:?}", String::from_utf8_lossy(&got));
        }
        match file.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads exactly `out.len()` bytes from a non-blocking descriptor, waiting in `poll(2)`.
pub fn read_exact_polled(file: &mut std::fs::File, out: &mut [u8]) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut got = 0;
    let deadline = Instant::now() + WAIT;
    while got < out.len() {
        match file.read(&mut out[got..]) {
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!("timed out after {got} of {} bytes", out.len());
                }
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::from(100u16))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
