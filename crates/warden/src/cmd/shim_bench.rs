//! `warden shim bench`: per-byte round-trip latency and bulk throughput through a real shim
//! (OPEN, recording on) next to `socat` relaying the same PTY pairs, in the same run; and the
//! login-to-OPEN latency. Prints a Markdown table for docs/BENCHMARKS.md.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_core::kdf::KdfParams;
use warden_core::keyring::Purpose;
use warden_core::password::Password;
use warden_core::secret::Passphrase;
use warden_store::audit::AuditPolicy;
use warden_store::identity::{Identity, IdentityPolicy, UnixMs, Username};

use crate::cmd::init::provision;
use crate::cmd::shim_live::{add_technician, current_code, read_exact_polled, LiveShim};

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

    fn stop(mut self) {
        self.mode.store(STOP, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Figures {
    median_us: f64,
    p99_us: f64,
    throughput_mb_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Round trips of one byte technician → device → technician, then `bytes` one way.
fn measure(
    tech: &mut std::fs::File,
    device: &Device,
    rounds: usize,
    bytes: usize,
) -> Result<Figures> {
    let mut rtts = Vec::with_capacity(rounds);
    let mut one = [0u8; 1];
    for i in 0..rounds + 50 {
        let started = Instant::now();
        tech.write_all(b"a")?;
        read_exact_polled(tech, &mut one)?;
        if i >= 50 {
            rtts.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);

    device.mode.store(SINK, Ordering::Relaxed);
    let before = device.received.load(Ordering::Relaxed);
    let chunk = vec![b'x'; 4096];
    let started = Instant::now();
    let mut written = 0;
    while written < bytes {
        match tech.write(&chunk[..(bytes - written).min(chunk.len())]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while device.received.load(Ordering::Relaxed) - before < bytes as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {bytes} bytes arrived",
                device.received.load(Ordering::Relaxed) - before
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = started.elapsed().as_secs_f64();
    device.mode.store(ECHO, Ordering::Relaxed);
    Ok(Figures {
        median_us: percentile(&rtts, 0.5),
        p99_us: percentile(&rtts, 0.99),
        throughput_mb_s: bytes as f64 / secs / 1e6,
    })
}

fn start_socat(tech: &std::path::Path, device: &std::path::Path) -> Result<Child> {
    Command::new("socat")
        .args(["-b", "65536"])
        .arg(format!("{},raw,echo=0", tech.display()))
        .arg(format!("{},raw,echo=0", device.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start socat (apt-get install socat)")
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
    let made = provision(
        &root,
        &passphrase,
        &auditor,
        &tmp.path().join("auditor-key.json"),
        &KdfParams::Pbkdf2Sha256 { iterations: 1000 },
        AuditPolicy::default(),
    )?;
    let mut db = made.db;
    Identity::init(&mut db, &IdentityPolicy::default())?;
    let mut identity = Identity::load(
        &db,
        made.keys.get(Purpose::Database).clone(),
        made.keys.get(Purpose::Audit).clone(),
    )?;
    let password = Password::new(format!(
        "Bench-{}!",
        hex::encode(warden_core::rand::array::<8>())
    ));
    let _ = identity.create_first_admin(
        &mut db,
        &Username::parse("root")?,
        &password,
        None,
        UnixMs::now(),
    )?;
    drop(db);
    let uri = add_technician(&made.dir, &made.keys, "root", &password, "bench")?;

    // warden
    let work = tmp.path().join("run");
    warden_core::fsx::create_private_dir(&work)?;
    let mut shim = LiveShim::start(&made.dir, &made.keys, &work, "bench-shim")?;
    let login = shim.login("bench", &current_code(&uri))?;
    let device = Device::start(shim.device.endpoint.try_clone()?);
    let ours = measure(&mut shim.tech.endpoint, &device, rounds, mib << 20)?;
    device.stop();
    shim.type_tech(b"\r~.")?;
    shim.wait_state("IDLE")?;
    let (tech_path, device_path) = (shim.tech.path.clone(), shim.device.path.clone());
    let mut tech = shim.tech.endpoint.try_clone()?;
    let device_endpoint = shim.device.endpoint.try_clone()?;
    let keep_ptys = (
        shim.tech.endpoint.try_clone()?,
        shim.device.endpoint.try_clone()?,
    );
    shim.stop()?;

    // socat on the same PTY pairs
    let mut socat = start_socat(&tech_path, &device_path)?;
    std::thread::sleep(Duration::from_millis(300));
    let device = Device::start(device_endpoint);
    // Drain whatever the shim printed last, then check socat relays.
    let mut scratch = [0u8; 4096];
    while tech.read(&mut scratch).map(|n| n > 0).unwrap_or(false) {}
    let theirs = measure(&mut tech, &device, rounds, mib << 20);
    device.stop();
    let _ = socat.kill();
    let _ = socat.wait();
    drop(keep_ptys);
    let theirs = theirs?;

    println!("shim bench: {rounds} one-byte round trips (technician -> device -> technician) and {mib} MiB one way, on PTYs");
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
        ours.median_us, ours.p99_us, ours.throughput_mb_s
    );
    println!(
        "| socat -b 65536 (same PTYs) | {:.0} | {:.0} | {:.1} |",
        theirs.median_us, theirs.p99_us, theirs.throughput_mb_s
    );
    println!();
    println!(
        "median latency ratio warden/socat: {:.2} (target <= 1.5)",
        ours.median_us / theirs.median_us
    );
    println!(
        "throughput ratio warden/socat: {:.2} (target >= 1.0)",
        ours.throughput_mb_s / theirs.throughput_mb_s
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
