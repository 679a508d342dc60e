//! Interop with independent TLS stacks: `openssl s_client` and `gnutls-cli` as the card.
//!
//! Each tool gets the Amendment B opening POST on standard input and must complete the PSK
//! handshake and get the first script (`200` with `X-Admin-Next-URI`). When a tool is missing,
//! the test fails if `CI=true` (CI installs them) and is skipped with a note otherwise.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use warden_ota::admin::Redelivery;
use warden_ota::gp;
use warden_ota::script::CommandScript;

const CARD: &str = "card-i";
const KEY_HEX: &str = "0102030405060708090a0b0c0d0e0f10";

fn key() -> std::sync::Arc<warden_ota::keys::Psk> {
    std::sync::Arc::new(warden_ota::keys::Psk::from_hex(KEY_HEX).unwrap())
}

/// Whether `tool` can run; fails the test under CI when it cannot.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required for the interop tests under CI (apt-get install openssl gnutls-bin)");
        }
        eprintln!("SKIP: {tool} not found; interop test not run");
    }
    ok
}

fn opening_post(port: u16) -> String {
    format!(
        "POST /admin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\nX-Admin-From: //se-id/iccid/interop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// Runs `cmd` with `input` on stdin (off the runtime thread); returns stdout + stderr.
async fn run(mut cmd: Command, input: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .unwrap()
}

/// `openssl s_client` as the card, offering no session ticket extension.
fn s_client(port: u16, identity: &str, key: &str, extra: &[&str]) -> Command {
    let mut c = openssl_client(port, identity, key);
    c.arg("-no_ticket").args(extra);
    c
}

/// `openssl s_client` as the card, with OpenSSL's defaults (a ticket is asked for).
fn openssl_client(port: u16, identity: &str, key: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["60", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-psk_identity", identity, "-psk", key, "-ign_eof"]);
    c
}

async fn server(null: bool) -> support::TestServer {
    let mut cfg = support::config();
    cfg.ciphers.null = null;
    let t = support::start(cfg).await;
    t.add_card(CARD, &key()).await;
    t
}

async fn queue(t: &support::TestServer) {
    t.push(
        CARD,
        CommandScript::new([gp::get_data(gp::data_object::CPLC)]),
        Redelivery::Allowed,
    )
    .await;
}

fn assert_first_script(out: &str) {
    assert!(out.contains("HTTP/1.1 200"), "no 200:\n{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-admin-next-uri: /admin?session="),
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase()
            .contains("content-type: application/vnd.globalplatform.card-content-mgt;version=1.0"),
        "{out}"
    );
}

/// Verifies: V59, O1, O4, O76
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_tls12_and_tls13_psk_get_the_first_script() {
    if !have("openssl") {
        return;
    }
    let t = server(false).await;
    let port = t.addr.port();
    for (flag, cipher) in [
        ("-tls1_2", "PSK-AES128-CBC-SHA256"),
        ("-tls1_2", "PSK-AES256-CBC-SHA384"),
        ("-tls1_3", "TLS_AES_128_GCM_SHA256"),
    ] {
        queue(&t).await;
        let extra: Vec<&str> = if flag == "-tls1_2" {
            vec![flag, "-cipher", cipher]
        } else {
            vec![flag, "-ciphersuites", cipher]
        };
        let out = run(s_client(port, CARD, KEY_HEX, &extra), opening_post(port)).await;
        assert!(out.contains(cipher), "{flag} {cipher}:\n{out}");
        assert_first_script(&out);
    }
    // TLS 1.3 with CCM (needs set_ciphersuites on our side).
    queue(&t).await;
    let out = run(
        s_client(
            port,
            CARD,
            KEY_HEX,
            &["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"],
        ),
        opening_post(port),
    )
    .await;
    assert!(out.contains("TLS_AES_128_CCM_SHA256"), "{out}");
    assert_first_script(&out);
    // Maximum Fragment Length 512.
    queue(&t).await;
    let out = run(
        s_client(port, CARD, KEY_HEX, &["-tls1_2", "-maxfraglen", "512"]),
        opening_post(port),
    )
    .await;
    assert_first_script(&out);
    t.stop().await;
}

/// Verifies: O17, O44, O69, O74, O77
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_wrong_key_and_unknown_identity_are_refused_with_named_alerts() {
    if !have("openssl") {
        return;
    }
    let t = server(false).await;
    let port = t.addr.port();
    let wrong = "ffffffffffffffffffffffffffffffff";
    let out = run(
        s_client(port, CARD, wrong, &["-tls1_2"]),
        opening_post(port),
    )
    .await;
    assert!(
        out.contains("alert bad record mac") && out.contains("alert number 20"),
        "{out}"
    );
    assert!(!out.contains("HTTP/1.1"));
    let out = run(
        s_client(port, CARD, wrong, &["-tls1_3"]),
        opening_post(port),
    )
    .await;
    assert!(
        out.contains("illegal parameter") && out.contains("alert number 47"),
        "{out}"
    );
    let out = run(
        s_client(port, "nobody", KEY_HEX, &["-tls1_2"]),
        opening_post(port),
    )
    .await;
    assert!(out.contains("alert number 115"), "{out}");
    let mismatches = t
        .recent_json()
        .into_iter()
        .filter(|e| e["event"] == "psk_mismatch")
        .count();
    assert_eq!(mismatches, 2);
    t.stop().await;
}

/// Verifies: O8, O17, O78
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_suites_only_when_enabled() {
    if !have("openssl") {
        return;
    }
    let null = ["-tls1_2", "-cipher", "PSK-NULL-SHA256:@SECLEVEL=0"];
    let t = server(false).await;
    let port = t.addr.port();
    queue(&t).await;
    let out = run(s_client(port, CARD, KEY_HEX, &null), opening_post(port)).await;
    assert!(
        out.contains("alert handshake failure") || out.contains("alert number 40"),
        "{out}"
    );
    assert!(!out.contains("HTTP/1.1 200"));
    let e = t.wait_for(|e| e.event.name() == "handshake_failed").await;
    assert!(e.to_json().contains("no_shared_cipher"), "{}", e.to_json());
    t.stop().await;

    let t = server(true).await;
    let port = t.addr.port();
    queue(&t).await;
    let out = run(s_client(port, CARD, KEY_HEX, &null), opening_post(port)).await;
    assert!(out.contains("PSK-NULL-SHA256"), "{out}");
    assert_first_script(&out);
    let e = t
        .wait_for(|e| e.event.name() == "tls_handshake_complete")
        .await;
    assert!(e.to_json().contains("\"null_cipher\":true"));
    t.stop().await;
}

/// Verifies: O1, O76, O77
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_psk_gets_the_first_script_and_wrong_keys_are_refused() {
    if !have("gnutls-cli") {
        return;
    }
    let t = server(false).await;
    let port = t.addr.port();
    let cli = |user: &str, key: &str| {
        let mut c = Command::new("timeout");
        c.args(["60", "gnutls-cli", "--priority"])
            .arg("NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK:+AES-128-CBC:+SHA256")
            .args(["--pskusername", user, "--pskkey", key, "-p"])
            .arg(port.to_string())
            .arg("127.0.0.1");
        c
    };
    queue(&t).await;
    let out = run(cli(CARD, KEY_HEX), opening_post(port)).await;
    assert!(out.contains("(PSK)-(AES-128-CBC)-(SHA256)"), "{out}");
    assert_first_script(&out);
    let out = run(
        cli(CARD, "ffffffffffffffffffffffffffffffff"),
        opening_post(port),
    )
    .await;
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("Bad record MAC") || out.contains("[20]"),
        "{out}"
    );
    let out = run(cli("nobody", KEY_HEX), opening_post(port)).await;
    assert!(out.contains("[115]"), "{out}");
    t.stop().await;
}

/// A session is never resumed: the server issues no ticket (TLS 1.2 or 1.3) and keeps no
/// session cache, so every connection proves the card's current PSK. A resumed TLS 1.2
/// session skips the PSK lookup: with resumption, a card whose key was removed came back in
/// with the session it saved before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_never_resumed_so_a_removed_key_stays_out() {
    if !have("openssl") {
        return;
    }
    let t = server(false).await;
    let port = t.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let client = |extra: &[&str]| {
        let mut c = openssl_client(port, CARD, KEY_HEX);
        c.args(extra);
        c
    };
    // With and without the ticket extension: resumption by ticket, then by session id.
    for tickets in [&[][..], &["-no_ticket"][..]] {
        let saved = dir.path().join(format!("tls12{}.pem", tickets.len()));
        let saved = saved.to_str().unwrap();
        queue(&t).await;
        let mut args = vec!["-tls1_2", "-sess_out", saved];
        args.extend_from_slice(tickets);
        let first = run(client(&args), opening_post(port)).await;
        assert_first_script(&first);
        assert!(first.contains("New, "), "{first}");
        assert!(
            !first.contains("TLS session ticket:"),
            "a ticket was issued:\n{first}"
        );
        if !Path::new(saved).exists() {
            // No session id either: s_client has nothing it could resume.
            continue;
        }
        queue(&t).await;
        let mut args = vec!["-tls1_2", "-sess_in", saved];
        args.extend_from_slice(tickets);
        let second = run(client(&args), opening_post(port)).await;
        assert_first_script(&second);
        assert!(
            second.contains("New, ") && !second.contains("Reused, "),
            "resumed:\n{second}"
        );
    }
    // TLS 1.3: no NewSessionTicket, so s_client has no session to save.
    let saved = dir.path().join("tls13.pem");
    queue(&t).await;
    let out = run(
        client(&["-tls1_3", "-sess_out", saved.to_str().unwrap()]),
        opening_post(port),
    )
    .await;
    assert_first_script(&out);
    assert!(!saved.exists(), "a TLS 1.3 ticket was issued:\n{out}");
    // The key is removed; the card offers the session it saved on its last connection.
    let saved = dir.path().join("before-removal.pem");
    let saved = saved.to_str().unwrap();
    queue(&t).await;
    assert_first_script(&run(client(&["-tls1_2", "-sess_out", saved]), opening_post(port)).await);
    t.remove_card(CARD).await;
    let args: Vec<&str> = if Path::new(saved).exists() {
        vec!["-tls1_2", "-sess_in", saved]
    } else {
        vec!["-tls1_2"]
    };
    let out = run(client(&args), opening_post(port)).await;
    assert!(
        !out.contains("HTTP/1.1"),
        "a removed key got an answer:\n{out}"
    );
    t.stop().await;
}

/// Found by outside testing, with a raw client: a declared body over the limit waited for the
/// body (408 after the idle timeout) instead of being refused at once; an absolute-form target
/// (`POST https://other.example/admin`) passed the host check on its Host header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_declarations_and_absolute_targets_are_refused_at_once() {
    if !have("openssl") {
        return;
    }
    let mut cfg = support::config();
    cfg.expected_host = Some("card.example".into());
    cfg.idle_timeout = std::time::Duration::from_secs(300);
    let t = support::start(cfg).await;
    t.add_card(CARD, &key()).await;
    let port = t.addr.port();
    let head = "X-Admin-Protocol: globalplatform-remote-admin/1.0\r\nX-Admin-From: //se-id/iccid/interop\r\n";
    let out = run(
        s_client(port, CARD, KEY_HEX, &["-tls1_2"]),
        format!(
            "POST /admin HTTP/1.1\r\nHost: card.example\r\n{head}Content-Length: 2000000\r\n\r\n"
        ),
    )
    .await;
    // Waiting for the body would end in 408 after the idle timeout (here longer than
    // s_client's 60 s limit), not in 413.
    assert!(out.contains("HTTP/1.1 413"), "{out}");
    queue(&t).await;
    let out = run(
        s_client(port, CARD, KEY_HEX, &["-tls1_2"]),
        format!("POST https://other.example/admin HTTP/1.1\r\nHost: card.example\r\n{head}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(out.contains("HTTP/1.1 421"), "{out}");
    let out = run(
        s_client(port, CARD, KEY_HEX, &["-tls1_2"]),
        format!("POST https://card.example/admin HTTP/1.1\r\nHost: card.example\r\n{head}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_first_script(&out);
    t.stop().await;
}
