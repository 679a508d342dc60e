//! `warden shim bench`: per-byte round-trip latency and bulk throughput through a real shim
//! (OPEN, recording on) next to `socat` relaying the same PTY pairs, in the same run; and the
//! login-to-OPEN latency. Prints a Markdown table for docs/BENCHMARKS.md.
//!
//! Implements: S4, S9

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_core::kdf::KdfParams;
use warden_core::password::Password;
use warden_core::secret::Passphrase;
use warden_store::audit::AuditPolicy;
use warden_store::identity::{IdentityPolicy, Username};
use warden_store::provision::{provision, Provision};

use crate::live_shim::{add_technician, current_code, nonblocking, read_exact_polled, LiveShim};
use warden_shim::serial::VirtualSerialPair;

const ECHO: u8 = 1;
const SINK: u8 = 2;
const STOP: u8 = 3;

/// The simulated device: echoes (latency) or swallows and counts (throughput).
struct Device {
    mode: Arc<AtomicU8>,
    received: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Device {
    fn start(mut endpoint: std::fs::File) -> Self {
        let mode = Arc::new(AtomicU8::new(ECHO));
        let received = Arc::new(AtomicU64::new(0));
        let (m, r) = (Arc::clone(&mode), Arc::clone(&received));
        let thread = std::thread::spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut buf = vec![0u8; 65536];
            while m.load(Ordering::Relaxed) != STOP {
                match endpoint.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if m.load(Ordering::Relaxed) == ECHO {
                            let _ = endpoint.write_all(&buf[..n]);
                        }
                        r.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    _ => {
                        let mut fds = [PollFd::new(endpoint.as_fd(), PollFlags::POLLIN)];
                        let _ = poll(&mut fds, PollTimeout::from(50u16));
                    }
                }
            }
        });
        Self {
            mode,
            received,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.mode.store(STOP, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One relay under test, seen from the technician's side.
struct Relay {
    tech: std::fs::File,
    device: Device,
    rtts: Vec<f64>,
    throughput_mb_s: Vec<f64>,
}

impl Relay {
    fn new(tech: std::fs::File, device_endpoint: std::fs::File) -> Self {
        Self {
            tech,
            device: Device::start(device_endpoint),
            rtts: Vec::new(),
            throughput_mb_s: Vec::new(),
        }
    }

    /// One byte technician -> device -> technician; returns microseconds.
    fn round_trip(&mut self) -> Result<f64> {
        let mut one = [0u8; 1];
        let started = Instant::now();
        self.tech.write_all(b"a")?;
        read_exact_polled(&mut self.tech, &mut one)?;
        Ok(started.elapsed().as_secs_f64() * 1e6)
    }

    /// `bytes` one way into a device that swallows them.
    fn bulk(&mut self, bytes: usize) -> Result<()> {
        self.device.mode.store(SINK, Ordering::Relaxed);
        let before = self.device.received.load(Ordering::Relaxed);
        let chunk = vec![b'x'; 4096];
        let started = Instant::now();
        let mut written = 0;
        while written < bytes {
            match self
                .tech
                .write(&chunk[..(bytes - written).min(chunk.len())])
            {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.device.received.load(Ordering::Relaxed) - before < bytes as u64 {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {bytes} bytes arrived",
                    self.device.received.load(Ordering::Relaxed) - before
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.throughput_mb_s
            .push(bytes as f64 / started.elapsed().as_secs_f64() / 1e6);
        self.device.mode.store(ECHO, Ordering::Relaxed);
        Ok(())
    }

    fn median_p99(&mut self) -> (f64, f64) {
        self.rtts.sort_by(f64::total_cmp);
        (percentile(&self.rtts, 0.5), percentile(&self.rtts, 0.99))
    }

    fn median_throughput(&mut self) -> f64 {
        self.throughput_mb_s.sort_by(f64::total_cmp);
        percentile(&self.throughput_mb_s, 0.5)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Both relays measured in the same time window: round trips alternate between them one by
/// one, and bulk transfers alternate A B B A, so the scheduler, the kernel's tty workers and
/// any background load treat both alike.
fn measure(relays: &mut [Relay; 2], rounds: usize, bytes: usize) -> Result<()> {
    for i in 0..rounds + 50 {
        for relay in relays.iter_mut() {
            let rtt = relay.round_trip()?;
            if i >= 50 {
                relay.rtts.push(rtt);
            }
        }
    }
    for order in [[0, 1], [1, 0], [0, 1], [1, 0]] {
        for index in order {
            relays[index].bulk(bytes)?;
        }
    }
    Ok(())
}

/// socat relaying a PTY pair set up exactly like the shim's.
struct Socat {
    child: Child,
    tech: VirtualSerialPair,
    device: VirtualSerialPair,
}

impl Socat {
    fn start() -> Result<Self> {
        let tech = VirtualSerialPair::new()?;
        let device = VirtualSerialPair::new()?;
        nonblocking(&tech.endpoint)?;
        nonblocking(&device.endpoint)?;
        let child = Command::new("socat")
            .args(["-b", "65536"])
            .arg(format!("{},raw,echo=0", tech.path.display()))
            .arg(format!("{},raw,echo=0", device.path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start socat (apt-get install socat)")?;
        let mut socat = Self {
            child,
            tech,
            device,
        };
        // socat is ready when a byte makes it across.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut probe = [0u8; 1];
        socat.tech.endpoint.write_all(b"?")?;
        loop {
            match socat.device.endpoint.read(&mut probe) {
                Ok(1) => break,
                _ if Instant::now() > deadline => bail!("socat relays nothing"),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        Ok(socat)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub fn run(rounds: usize, mib: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("data");
    let passphrase = Passphrase::new(format!(
        "bench-{}",
        hex::encode(warden_core::rand::array::<12>())
    ));
    let auditor = Passphrase::new(format!(
        "auditor-{}",
        hex::encode(warden_core::rand::array::<12>())
    ));
    let password = Password::new(format!(
        "Bench-{}!",
        hex::encode(warden_core::rand::array::<8>())
    ));
    let made = provision(Provision {
        root: &root,
        passphrase: &passphrase,
        auditor_passphrase: &auditor,
        auditor_key_out: &tmp.path().join("auditor-key.json"),
        kdf: &KdfParams::Pbkdf2Sha256 { iterations: 1000 },
        audit_policy: AuditPolicy::default(),
        identity_policy: &IdentityPolicy::default(),
        admin: &Username::parse("root")?,
        admin_password: &password,
        admin_totp: None,
    })?;
    drop(made.store);
    let uri = add_technician(&made.dir, &made.keys, "root", &password, "bench")?;

    // warden and socat side by side, each between its own two PTY pairs
    let work = tmp.path().join("run");
    warden_core::fsx::create_private_dir(&work)?;
    let mut shim = LiveShim::start(&made.dir, &made.keys, &work, "bench-shim")?;
    let login = shim.login("bench", &current_code(&uri))?;
    let socat = Socat::start()?;
    let mut relays = [
        Relay::new(
            shim.tech.endpoint.try_clone()?,
            shim.device.endpoint.try_clone()?,
        ),
        Relay::new(
            socat.tech.endpoint.try_clone()?,
            socat.device.endpoint.try_clone()?,
        ),
    ];
    let measured = measure(&mut relays, rounds, mib << 20);
    let [mut ours, mut theirs] = relays;
    ours.device.stop();
    theirs.device.stop();
    drop(socat);
    shim.stop()?;
    measured?;
    let ((ours_median, ours_p99), (theirs_median, theirs_p99)) =
        (ours.median_p99(), theirs.median_p99());
    let (ours_mb_s, theirs_mb_s) = (ours.median_throughput(), theirs.median_throughput());

    println!("shim bench: {rounds} one-byte round trips (technician -> device -> technician) per relay, alternating warden and socat, and {mib} MiB one way four times each (A B B A), on PTYs");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!();
    println!("| relay | RTT median µs | RTT p99 µs | throughput MB/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| warden shim (OPEN, recording on) | {:.0} | {:.0} | {:.1} |",
        ours_median, ours_p99, ours_mb_s
    );
    println!(
        "| socat -b 65536 (identical PTY pairs) | {:.0} | {:.0} | {:.1} |",
        theirs_median, theirs_p99, theirs_mb_s
    );
    println!();
    println!(
        "median latency ratio warden/socat: {:.2} (target <= 1.5)",
        ours_median / theirs_median
    );
    println!(
        "throughput ratio warden/socat: {:.2} (target >= 1.0)",
        ours_mb_s / theirs_mb_s
    );
    println!(
        "login to OPEN (code Enter -> \"access granted\"): {:.1} ms (target < 500 ms)",
        login.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}
