//! `warden siem test` against a real rsyslog: success with the permitted client certificate,
//! and a non-zero exit naming the cause (and a hint) for a refused one or a wrong server name.

#[path = "support/mod.rs"]
mod cli;
#[path = "../../warden-siem/tests/support/mod.rs"]
mod support;

use std::path::Path;

use support::{cef_of, free_port, rsyslog_available, Issued, Pki, Rsyslog};

fn config(
    dir: &Path,
    name: &str,
    pki: &Pki,
    port: u16,
    client: &Issued,
    server_name: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "shim:\n  not: read here\nsiem:\n  host: 127.0.0.1\n  port: {port}\n  server_name: {server_name}\n  \
             ca_file: {}\n  client_cert: {}\n  client_key: {}\n  hostname: shim-cli.test\n  \
             delivery: {{ confirm_after_ms: 1000 }}\n",
            pki.ca.cert_path.display(),
            client.cert_path.display(),
            client.key_path.display()
        ),
    )
    .unwrap();
    path
}

/// `warden siem test` signed in as the fixture's administrator (it needs `siem.test`), with
/// the plain test configuration explicitly allowed.
fn warden(fx: &cli::Fixture, config: &Path) -> (bool, String, String) {
    let out = cli::run(
        fx.admin()
            .args(["siem", "test", "--allow-plain-config", "--config"])
            .arg(config),
    );
    (out.code == 0, out.stdout_text(), out.stderr)
}

#[test]
fn siem_test_reports_success_or_the_exact_failure() {
    if !rsyslog_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fx = cli::Fixture::new();
    let pki = Pki::create(&tmp.path().join("pki"));
    let rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), &pki, free_port());
    let port = rsyslog.port;

    let good = config(
        tmp.path(),
        "good.yaml",
        &pki,
        port,
        &pki.client,
        "localhost",
    );
    let (ok, stdout, stderr) = warden(&fx, &good);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("ok: test event delivered"), "{stdout}");
    let got = rsyslog.wait_for("the test event", |l| !l.is_empty());
    assert_eq!(cef_of(&got[0]).unwrap().header[4], "siem-test");

    let refused = config(
        tmp.path(),
        "wrong-name.yaml",
        &pki,
        port,
        &pki.client_wrong_name,
        "localhost",
    );
    let (ok, _, stderr) = warden(&fx, &refused);
    assert!(!ok);
    assert!(
        stderr.contains("rejected the client certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");

    let mismatch = config(
        tmp.path(),
        "mismatch.yaml",
        &pki,
        port,
        &pki.client,
        "siem.elsewhere.test",
    );
    let (ok, _, stderr) = warden(&fx, &mismatch);
    assert!(!ok);
    assert!(
        stderr.contains("not valid for the name \"siem.elsewhere.test\""),
        "{stderr}"
    );

    let closed = config(
        tmp.path(),
        "closed.yaml",
        &pki,
        free_port(),
        &pki.client,
        "localhost",
    );
    let (ok, _, stderr) = warden(&fx, &closed);
    assert!(!ok);
    assert!(stderr.contains("refused"), "{stderr}");

    assert_eq!(
        rsyslog.received().len(),
        1,
        "only the permitted client's event arrived"
    );
}
