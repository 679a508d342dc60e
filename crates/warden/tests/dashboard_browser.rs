//! The OTA dashboard in a real browser: `warden ota serve` with the dashboard, an operator with
//! a password and TOTP, and `tests/python/dashboard_browser.py` driving headless Chromium through
//! Selenium and Debian's chromedriver (nothing downloaded at run time): sign in, a simulated
//! card's session appears live, a script pushed from the page, its result arriving, markup in
//! identities shown as text. Screenshots of each step land in this test's output directory
//! (their paths are printed); `docs/img/dashboard.png` is one of them.
//!
//! Needs Chromium, chromedriver and the Python test requirements (selenium, pyotp): with
//! `CI=true` the test fails without them, elsewhere it says SKIP and passes.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{python, run, Fixture, Python};
use warden_core::keyring::Purpose;
use warden_store::audit::read_rows;
use warden_store::Database;

const OPERATOR: &str = "oskar";
const OPERATOR_PASSWORD: &str = "Oskar-Operator-Pass-1!";
const CARD: &str = "UICC_001";
const CARD_KEY: &str = "0123456789ABCDEF0123456789ABCDEF";

fn ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// Chromium, chromedriver and selenium, or why not.
fn browser(py: &Python) -> Result<(PathBuf, PathBuf), String> {
    let find = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(env) {
            return Some(PathBuf::from(p));
        }
        names
            .iter()
            .map(|n| Path::new("/usr/bin").join(n))
            .find(|p| p.exists())
    };
    let chromium = find("WARDEN_TEST_CHROMIUM", &["chromium", "chromium-browser"])
        .ok_or("no Chromium (apt-get install chromium)")?;
    let driver = find("WARDEN_TEST_CHROMEDRIVER", &["chromedriver"])
        .ok_or("no chromedriver (apt-get install chromium-driver)")?;
    let out = py
        .code("import selenium, pyotp", std::iter::empty::<&str>())
        .output()
        .map_err(|e| format!("cannot run Python: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the Python test requirements lack selenium or pyotp: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((chromium, driver))
}

/// `warden ota serve` as a child; stopped with SIGTERM when dropped.
struct Serving {
    child: Child,
    ota: String,
    dashboard: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(fx: &Fixture, config: &Path) -> Serving {
    let mut child = fx
        .warden()
        .args(["ota", "serve", "--allow-plain-config", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden ota serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[ota serve] {line}");
            let _ = tx.send(line);
        }
    });
    let (mut ota, mut dashboard) = (None, None);
    while ota.is_none() || dashboard.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("warden ota serve prints its addresses");
        if let Some(a) = line.strip_prefix("warden ota: listening on ") {
            ota = Some(a.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("warden ota: dashboard on ") {
            dashboard = Some(a.trim().trim_end_matches('/').to_string());
        }
    }
    Serving {
        child,
        ota: ota.unwrap(),
        dashboard: dashboard.unwrap(),
    }
}

/// Verifies: O13, O71
#[test]
fn sign_in_watch_a_session_push_and_see_the_result_in_chromium() {
    let Some(py) = python() else { return };
    let (chromium, driver) = match browser(&py) {
        Ok(found) => found,
        Err(reason) if ci() => panic!("the browser test cannot run: {reason}"),
        Err(reason) => {
            eprintln!("SKIP: {reason}");
            return;
        }
    };
    let fx = Fixture::new();
    // An operator with a password and TOTP.
    let pw_file = fx.file(
        "oskar-password",
        format!("{OPERATOR_PASSWORD}\n").as_bytes(),
    );
    let added = run(fx
        .admin()
        .args([
            "user",
            "add",
            OPERATOR,
            "--role",
            "operator",
            "--enroll-totp",
            "--json",
            "--new-password-file",
        ])
        .arg(&pw_file));
    added.ok();
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let uri_file = fx.file(
        "oskar-totp-uri",
        added["totp"]["uri"].as_str().unwrap().as_bytes(),
    );
    // The card, and one whose identity is markup.
    for identity in [CARD, "UICC_<b>bold</b>"] {
        run(fx.admin().args([
            "ota",
            "keys",
            "add",
            "--identity",
            identity,
            "--key",
            CARD_KEY,
        ]))
        .ok();
    }
    let key_file = fx.file("card.key", format!("{CARD_KEY}\n").as_bytes());
    let config = fx.file(
        "ota.yaml",
        b"listen: 127.0.0.1:0\nkeys:\n  reload_secs: 1\ndashboard:\n  listen: 127.0.0.1:0\n  stats_interval_secs: 1\n  alarms:\n    psk_failure_burst: 3\n",
    );
    let server = serve(&fx, &config);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-browser");
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new(&py.exe)
        .arg(Python::script_path("dashboard_browser.py"))
        .args([
            "--url",
            &server.dashboard,
            "--user",
            OPERATOR,
            "--password-file",
        ])
        .arg(&pw_file)
        .arg("--totp-uri-file")
        .arg(&uri_file)
        .arg("--warden")
        .arg(env!("CARGO_BIN_EXE_warden"))
        .args(["--server", &server.ota, "--card", CARD, "--key-file"])
        .arg(&key_file)
        .arg("--screenshots")
        .arg(&shots)
        .arg("--chromium")
        .arg(&chromium)
        .arg("--chromedriver")
        .arg(&driver)
        .env("SE_OFFLINE", "true")
        .stdin(Stdio::null())
        .output()
        .expect("run the browser test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("screenshot: ")) {
        println!("{line}");
    }
    assert!(
        out.status.success(),
        "browser test failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["screenshots"].as_array().unwrap().len(), 6);
    drop(server);

    // On the record: oskar's sign-in and the script he queued, under his name.
    let db = Database::open(
        &fx.data_dir.join(warden_store::DB_FILE),
        &fx.key(Purpose::Database),
    )
    .unwrap();
    let rows = read_rows(&db, 1, None).unwrap();
    let by = |action: &str| {
        rows.iter()
            .any(|r| r.actor == OPERATOR && r.action == action && r.outcome == "success")
    };
    assert!(by("login.dashboard"));
    assert!(by("ota.script.queue"));
    assert!(by("ota.results.view"));
    assert!(rows
        .iter()
        .any(|r| r.action == "ota.script.complete" && r.subject == format!("card:{CARD}")));
}
