//! The operator dashboard over real HTTP against a real server and encrypted store: sign-in
//! with password and one-time code, the session cookie, CSRF and origin checks, roles (a viewer
//! cannot push; the denial is audited), pushes audited under the person, the live stream,
//! session expiry, lockout, `/metrics` access, and HTTPS.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use warden_core::password::Password;
use warden_core::rbac::{Permission, Role};
use warden_core::secret::Key32;
use warden_core::totp::{KeyUri, TotpParams};
use warden_ota::config::DashboardConfig;
use warden_ota::dashboard::{Dashboard, DashboardError, OperatorStore};
use warden_ota::simulator::{self, GpCard};
use warden_store::identity::{Identity, IdentityPolicy, NewUser, UnixMs, Username};
use warden_store::{Database, Store};

use support::TestServer;

const DB_KEY: [u8; 32] = [0x11; 32];
const AUDIT_KEY: [u8; 32] = [0x22; 32];
const ROOT_PW: &str = "Root-Password-0001!";
const OLGA_PW: &str = "Olga-Operator-Pass-1!";
const AUDRA_PW: &str = "Audra-Auditor-Pass-1!";
const PETE_PW: &str = "Pete-Password-Only-1!";

fn fast_policy() -> IdentityPolicy {
    IdentityPolicy::from_json(
        r#"{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},
            "backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}"#,
    )
    .unwrap()
}

/// The users: root (administrator), olga (operator, TOTP), audra (auditor, TOTP), pete
/// (operator, password only).
struct Users {
    olga: KeyUri,
    audra: KeyUri,
}

fn setup_identity(path: &Path) -> Users {
    let mut db = Database::open(path, &Key32::from_bytes(DB_KEY)).unwrap();
    Identity::init(&mut db, &fast_policy()).unwrap();
    let mut id =
        Identity::load(&db, Key32::from_bytes(DB_KEY), Key32::from_bytes(AUDIT_KEY)).unwrap();
    let now = UnixMs::now();
    let root = Username::parse("root").unwrap();
    id.create_first_admin(&mut db, &root, &Password::new(ROOT_PW.into()), None, now)
        .unwrap();
    let admin = id
        .authenticate_operator(&mut db, "root", &Password::new(ROOT_PW.into()), None, now)
        .unwrap();
    let by = id
        .require(&mut db, &admin, Permission::UserManage, "user.add", now)
        .unwrap();
    let mut add = |name: &str, role, pw: &str, totp: bool| {
        id.add_user(
            &mut db,
            &by,
            NewUser {
                username: &Username::parse(name).unwrap(),
                role,
                password: Some(&Password::new(pw.into())),
                totp: totp.then(TotpParams::default),
            },
            now,
        )
        .unwrap()
    };
    let olga = add("olga", Role::Operator, OLGA_PW, true).unwrap();
    let audra = add("audra", Role::Auditor, AUDRA_PW, true).unwrap();
    assert!(add("pete", Role::Operator, PETE_PW, false).is_none());
    Users { olga, audra }
}

/// The code for now plus `steps` time steps (inside the ±1 window; each sign-in needs a later
/// step than the last one accepted).
fn code(uri: &KeyUri, steps: u64) -> String {
    let now = UnixMs::now().secs() + steps * 30;
    uri.params()
        .code_at(uri.secret(), now)
        .expose_secret()
        .to_owned()
}

struct Dash {
    t: TestServer,
    users: Users,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), DashboardError>>,
    tls: bool,
}

async fn start(edit: impl FnOnce(&mut DashboardConfig)) -> Dash {
    let mut users = None;
    let t = support::start_with(support::config(), |db| {
        users = Some(setup_identity(db.path()));
    })
    .await;
    let users = users.unwrap();
    let path = t.dir.path().join("warden.db");
    let db = Database::open(&path, &Key32::from_bytes(DB_KEY)).unwrap();
    let identity =
        Identity::load(&db, Key32::from_bytes(DB_KEY), Key32::from_bytes(AUDIT_KEY)).unwrap();
    let operators = OperatorStore::new(Store { db, identity });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = DashboardConfig::with_defaults(addr);
    config.stats_interval = Duration::from_secs(1);
    edit(&mut config);
    let tls = config.tls.is_some();
    let dash = Dashboard::new(t.server.clone(), config, Some(operators)).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(dash.serve(listener, async {
        let _ = stopped.await;
    }));
    Dash {
        t,
        users,
        addr,
        stop: Some(stop),
        task,
        tls,
    }
}

impl Dash {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the dashboard stops")
            .unwrap()
            .unwrap();
        self.t.stop().await;
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Reply {
        if self.tls {
            let stream = tls_connect(self.addr).await;
            http(stream, self.addr, method, path, headers, body).await
        } else {
            let stream = TcpStream::connect(self.addr).await.unwrap();
            http(stream, self.addr, method, path, headers, body).await
        }
    }

    /// Signs in; returns the cookie pair (`name=value`).
    async fn sign_in(&self, user: &str, password: &str, code: &str) -> Result<String, Reply> {
        let form = format!(
            "username={user}&password={}&code={code}",
            password.replace('!', "%21")
        );
        let origin = self.origin();
        let r = self
            .request(
                "POST",
                "/signin",
                &[("Origin", &origin)],
                Some(("application/x-www-form-urlencoded", &form)),
            )
            .await;
        if r.status != 303 {
            return Err(r);
        }
        let set = r.header("set-cookie").expect("a session cookie");
        Ok(set.split(';').next().unwrap().to_string())
    }

    async fn csrf(&self, cookie: &str) -> String {
        let page = self.request("GET", "/", &[("Cookie", cookie)], None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let start = page.body.find("name=\"csrf-token\" content=\"").unwrap() + 27;
        let end = start + page.body[start..].find('"').unwrap();
        page.body[start..end].to_string()
    }

    async fn push(
        &self,
        cookie: &str,
        csrf: Option<&str>,
        origin: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut h = vec![("Cookie", cookie)];
        if let Some(c) = csrf {
            h.push(("X-CSRF-Token", c));
        }
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        self.request("POST", "/api/push", &h, Some(("application/json", body)))
            .await
    }

    async fn audit(&self) -> Vec<(String, String, String, String)> {
        self.t
            .store
            .call(|tx, _| {
                let mut stmt = tx.prepare(
                    "SELECT actor, action, subject, outcome FROM audit_events ORDER BY seq",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap()
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    match body {
        Some((ctype, b)) => req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("\r\n"),
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("a complete answer")
        .ok();
    parse_reply(&String::from_utf8_lossy(&out))
}

fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn tls_connect(addr: SocketAddr) -> tokio_openssl::SslStream<TcpStream> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut s).connect().await.unwrap();
    s
}

/// Reads a live stream until `pred` holds for what arrived (or 30 s pass).
async fn stream_until(
    addr: SocketAddr,
    cookie: &str,
    mut pred: impl FnMut(&str) -> bool,
) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 8192];
    while !pred(&got) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("the stream did not show it; got:\n{got}"))
            .unwrap();
        if n == 0 {
            break;
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

const GET_STATUS_APPS: &str =
    r#"{"cards":"card-1","format":"hex","script":"80F24002024F0000","label":"inventory"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused() {
    let d = start(|_| {}).await;
    let r = d.request("GET", "/", &[], None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/signin"));
    let signin = d.request("GET", "/signin", &[], None).await;
    assert_eq!(signin.status, 200);
    let csp = signin.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    for path in [
        "/api/cards",
        "/api/stream",
        "/api/cards/card-1/history",
        "/api/sessions",
        "/api/events",
        "/api/whoami",
    ] {
        let r = d.request("GET", path, &[], None).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
    }
    // A made-up cookie is no session.
    let r = d
        .request(
            "GET",
            "/api/cards",
            &[("Cookie", "warden_dashboard=AAAA")],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let origin = d.origin();
    let r = d.push("x=y", None, Some(&origin), GET_STATUS_APPS).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // /metrics is open on a loopback address.
    let r = d.request("GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("warden_ota_connections_accepted_total"));
    d.stop().await;
}

/// Verifies: O71
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pushes_the_card_answers_and_the_page_sees_it_live() {
    let d = start(|_| {}).await;
    let key = support::psk(7);
    d.t.add_card("card-1", &key).await;
    d.t.add_card("<script>alert(1)</script>", &key).await;

    // Wrong code: refused and counted.
    let wrong = d.sign_in("olga", OLGA_PW, "000000").await.unwrap_err();
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("authentication failed"),
        "{}",
        wrong.body
    );
    let cookie = d
        .sign_in("olga", OLGA_PW, &code(&d.users.olga, 0))
        .await
        .unwrap();
    assert!(cookie.starts_with("warden_dashboard="));
    let csrf = d.csrf(&cookie).await;
    let origin = d.origin();

    // CSRF: missing, wrong, or another origin: 403, nothing queued.
    let r = d.push(&cookie, None, Some(&origin), GET_STATUS_APPS).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = d
        .push(
            &cookie,
            Some("not-the-token"),
            Some(&origin),
            GET_STATUS_APPS,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = d
        .push(
            &cookie,
            Some(&csrf),
            Some("http://evil.example"),
            GET_STATUS_APPS,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body.matches("evil.example").count(),
        1,
        "said once: {}",
        r.body
    );
    let r = d.push(&cookie, Some(&csrf), None, GET_STATUS_APPS).await;
    assert_eq!(r.status, 403, "no Origin and no Referer: {}", r.body);
    assert!(d.t.reports("card-1").await.is_empty());

    // Validation before queueing: errors name the line; an unknown card is refused.
    let r = d
        .push(
            &cookie,
            Some(&csrf),
            Some(&origin),
            r#"{"cards":"card-1","format":"hex","script":"00A40400\n00A4ZZ"}"#,
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("line 2"), "{}", r.body);
    let r = d
        .push(
            &cookie,
            Some(&csrf),
            Some(&origin),
            r#"{"cards":"card-9","format":"hex","script":"00A40400"}"#,
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("not known"), "{}", r.body);
    // A dry run checks and queues nothing.
    let r = d
        .push(&cookie, Some(&csrf), Some(&origin), r#"{"cards":"prefix:card-","format":"yaml","script":"commands:\n  - select: A000000151000000\n","dry_run":true}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("00A4040008A00000015100000000"),
        "{}",
        r.body
    );
    assert!(d.t.reports("card-1").await.is_empty());

    // The push.
    let r = d
        .push(&cookie, Some(&csrf), Some(&origin), GET_STATUS_APPS)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let script = v["queued"][0]["script"].as_u64().unwrap();
    assert_eq!(v["queued"][0]["card"], "card-1");

    // The live stream shows the card's session and the script's result as they happen.
    let addr = d.addr;
    let watcher = {
        let cookie = cookie.clone();
        tokio::spawn(async move {
            stream_until(addr, &cookie, |s| {
                s.contains("event: stats") && s.contains("\"event\":\"script_completed\"")
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = simulator::run_session(&d.t.card("card-1", &key), &mut GpCard::new())
        .await
        .unwrap();
    assert_eq!(report.scripts.len(), 1);
    let seen = watcher.await.unwrap();
    assert!(seen.contains("\"event\":\"session_active\""), "{seen}");
    assert!(seen.contains("\"event\":\"apdu_sent\""), "{seen}");
    assert!(seen.contains("\"event\":\"script_queued\""), "{seen}");
    assert!(seen.contains(&format!("\"script_id\":{script}")), "{seen}");

    // The card's history: C-APDU, R-APDU, SW. A read's results may be committed a moment
    // after the card was answered (`Plan::durability`): wait for the store first.
    for _ in 0..200 {
        if d.t
            .reports("card-1")
            .await
            .iter()
            .all(|r| r.state == "done")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let h = d
        .request(
            "GET",
            "/api/cards/card-1/history",
            &[("Cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    let h: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    let s0 = &h["scripts"][0];
    assert_eq!(s0["id"].as_u64(), Some(script));
    assert_eq!(s0["state"], "done");
    assert_eq!(s0["exchanges"][0]["command"], "80F24002024F0000");
    assert_eq!(s0["exchanges"][0]["sw"], 0x9000);
    assert!(h["sessions"][0]["state"].is_string());

    // Cards: search, and an identity that looks like markup comes back as data.
    let c = d
        .request("GET", "/api/cards?q=SCRIPT", &[("Cookie", &cookie)], None)
        .await;
    let c: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(c.as_array().unwrap().len(), 1);
    assert_eq!(c[0]["identity"], "<script>alert(1)</script>");

    // The record: olga's sign-in (and the failure before it, as anonymous), the queued script
    // under her name, her read of the results.
    let audit = d.audit().await;
    let has = |actor: &str, action: &str, outcome: &str| {
        audit
            .iter()
            .any(|(a, act, _, o)| a == actor && act == action && o == outcome)
    };
    assert!(has("anonymous", "login.dashboard", "failure"), "{audit:?}");
    assert!(has("olga", "login.dashboard", "success"), "{audit:?}");
    assert!(has("olga", "ota.script.queue", "success"), "{audit:?}");
    assert!(has("olga", "ota.results.view", "success"), "{audit:?}");
    assert!(has("olga", "ota.sessions.view", "success"), "{audit:?}");
    assert_eq!(
        audit
            .iter()
            .filter(|(_, act, _, _)| act == "ota.script.queue")
            .count(),
        1,
        "the dry run and the refused pushes queued nothing"
    );

    // Sign-out ends the session.
    let r = d
        .request(
            "POST",
            "/signout",
            &[("Cookie", &cookie), ("Origin", &origin)],
            Some(("application/x-www-form-urlencoded", &format!("csrf={csrf}"))),
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = d
        .request("GET", "/api/cards", &[("Cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, 401);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_cannot_push_and_the_refusal_is_audited() {
    let d = start(|_| {}).await;
    d.t.add_card("card-1", &support::psk(7)).await;
    let cookie = d
        .sign_in("audra", AUDRA_PW, &code(&d.users.audra, 0))
        .await
        .unwrap();
    let page = d.request("GET", "/", &[("Cookie", &cookie)], None).await;
    assert!(page.body.contains("data-can-push=\"false\""));
    assert!(page.body.contains("id=\"push-denied\""));
    let csrf = d.csrf(&cookie).await;
    let origin = d.origin();
    let r = d
        .push(&cookie, Some(&csrf), Some(&origin), GET_STATUS_APPS)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("does not grant ota.script.push"),
        "{}",
        r.body
    );
    assert!(d.t.reports("card-1").await.is_empty());
    let audit = d.audit().await;
    assert!(
        audit.iter().any(|(a, act, s, o)| a == "audra"
            && act == "ota.script.push.denied"
            && s == "permission:ota.script.push"
            && o == "denied"),
        "{audit:?}"
    );
    // She may still watch.
    let r = d
        .request("GET", "/api/cards", &[("Cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_when_idle() {
    let d = start(|c| {
        c.session_idle = Duration::from_secs(1);
    })
    .await;
    let cookie = d
        .sign_in("olga", OLGA_PW, &code(&d.users.olga, 0))
        .await
        .unwrap();
    let r = d
        .request("GET", "/api/cards", &[("Cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = d
        .request("GET", "/api/cards", &[("Cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("ended (idle)"), "{}", r.body);
    // The expiry is on the record (written without waiting).
    let mut audited = false;
    for _ in 0..100 {
        if d.audit().await.iter().any(|(a, act, s, _)| {
            a == "service:ota" && act == "ota.dashboard.expire" && s == "user:olga"
        }) {
            audited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(audited);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_lock_the_user_and_a_password_alone_is_not_enough() {
    let d = start(|_| {}).await;
    // Password only, while the dashboard requires a one-time code.
    let r = d.sign_in("pete", PETE_PW, "").await.unwrap_err();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("no one-time code enrolled"), "{}", r.body);
    // Five failures lock olga (the default policy); then even the right code is refused.
    for _ in 0..5 {
        let r = d
            .sign_in("olga", "Wrong-Password-000!", "123456")
            .await
            .unwrap_err();
        assert_eq!(r.status, 401);
    }
    let r = d
        .sign_in("olga", OLGA_PW, &code(&d.users.olga, 0))
        .await
        .unwrap_err();
    assert_eq!(r.status, 401);
    assert!(r.body.contains("locked"), "{}", r.body);
    let audit = d.audit().await;
    assert!(
        audit
            .iter()
            .any(|(a, act, s, _)| a == "anonymous" && act == "lockout.lock" && s == "user:olga"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|(a, act, _, o)| a == "pete" && act == "ota.dashboard.denied" && o == "denied"),
        "{audit:?}"
    );
    // A sign-in from another origin is refused before anything is checked.
    let r = d
        .request(
            "POST",
            "/signin",
            &[("Origin", "http://evil.example")],
            Some((
                "application/x-www-form-urlencoded",
                "username=audra&password=x&code=1",
            )),
        )
        .await;
    assert_eq!(r.status, 403);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_file)
            .unwrap();
        f.write_all(b"s3cret-scraper-token\n").unwrap();
    }
    let d = start(|c| c.metrics_token_file = Some(token_file.clone())).await;
    let r = d.request("GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 401);
    let r = d
        .request(
            "GET",
            "/metrics",
            &[("Authorization", "Bearer wrong")],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let r = d
        .request(
            "GET",
            "/metrics",
            &[("Authorization", "Bearer s3cret-scraper-token")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // The scheme name is case-insensitive (found by outside testing).
    let r = d
        .request(
            "GET",
            "/metrics",
            &[("Authorization", "bearer s3cret-scraper-token")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    d.stop().await;
}

/// Sign-out takes the CSRF token as the header, with no form (outside testing found 415), and
/// is refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_takes_the_csrf_token_as_a_header() {
    let d = start(|_| {}).await;
    let cookie = d
        .sign_in("olga", OLGA_PW, &code(&d.users.olga, 0))
        .await
        .unwrap();
    let csrf = d.csrf(&cookie).await;
    let origin = d.origin();
    let r = d
        .request(
            "POST",
            "/signout",
            &[("Cookie", &cookie), ("Origin", &origin)],
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = d
        .request(
            "POST",
            "/signout",
            &[
                ("Cookie", &cookie),
                ("Origin", &origin),
                ("X-CSRF-Token", &csrf),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = d
        .request("GET", "/api/cards", &[("Cookie", &cookie)], None)
        .await;
    assert_eq!(r.status, 401);
    d.stop().await;
}

/// Found by outside testing: with the session table full, a sign-in was refused with 503 but
/// recorded as a successful `login.dashboard`. A full table now refuses before any credential
/// is checked, and nothing is recorded as a sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_table_refuses_a_sign_in_before_checking_it() {
    let d = start(|c| c.max_sessions = 1).await;
    d.sign_in("olga", OLGA_PW, &code(&d.users.olga, 0))
        .await
        .unwrap();
    let before = d.audit().await;
    let r = d
        .sign_in("audra", AUDRA_PW, &code(&d.users.audra, 0))
        .await
        .unwrap_err();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("too many dashboard sessions"), "{}", r.body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = d.audit().await;
    assert_eq!(after.len(), before.len(), "{:?}", &after[before.len()..]);
    d.stop().await;
}

fn self_signed(dir: &Path) -> warden_ota::config::DashboardTls {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::{X509NameBuilder, X509};
    let key = PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = dir.join("dash.pem");
    let key_path = dir.join("dash.key");
    std::fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap();
        f.write_all(&key.private_key_to_pem_pkcs8().unwrap())
            .unwrap();
    }
    warden_ota::config::DashboardTls {
        cert,
        key: key_path,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_gives_a_secure_host_cookie_and_plain_http_leaves_loopback_only_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let d = start(|c| c.tls = Some(tls.clone())).await;
    let form = format!(
        "username=olga&password={}&code={}",
        OLGA_PW.replace('!', "%21"),
        code(&d.users.olga, 0)
    );
    let origin = format!("https://{}", d.addr);
    let r = d
        .request(
            "POST",
            "/signin",
            &[("Origin", &origin)],
            Some(("application/x-www-form-urlencoded", &form)),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("__Host-warden_dashboard="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
    assert!(r.header("strict-transport-security").is_some());
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = d
        .request("GET", "/api/whoami", &[("Cookie", &pair)], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"role\":\"operator\""));
    d.stop().await;

    // Without TLS (or without sign-in), the dashboard refuses a non-loopback address.
    let t = support::start(support::config()).await;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = DashboardConfig::with_defaults(addr);
    config.sign_in = false;
    assert!(matches!(
        Dashboard::new(t.server.clone(), config, None),
        Err(DashboardError::NotLoopback(_))
    ));
    // Configured on loopback, handed a listener that is not: refused when serving.
    let mut config = DashboardConfig::with_defaults("127.0.0.1:0".parse().unwrap());
    config.sign_in = false;
    let dash = Dashboard::new(t.server.clone(), config, None).unwrap();
    let e = dash.serve(listener, async {}).await.unwrap_err();
    assert!(matches!(e, DashboardError::NotLoopback(_)), "{e}");
    // And sign-in needs the users.
    let config = DashboardConfig::with_defaults("127.0.0.1:0".parse().unwrap());
    assert!(matches!(
        Dashboard::new(t.server.clone(), config, None),
        Err(DashboardError::NoIdentityStore)
    ));
    t.stop().await;
}
