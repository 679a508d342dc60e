//! Test harness: a throwaway PKI made with the `openssl` crate, and a real rsyslog (Debian
//! `rsyslog` + `rsyslog-gnutls`) run in the foreground on 127.0.0.1 with TLS, `x509/name`
//! client authentication and one permitted peer, writing each received message's raw bytes
//! (`%rawmsg%`) as one line of a file.
//!
//! When `rsyslogd` or its gtls driver is missing, [`rsyslog_available`] fails the test if
//! `CI=true` and otherwise prints `SKIP: …` and tells the test to return.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// Generous: the machine running the tests may be busy.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
pub const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// The client name rsyslog permits.
pub const CLIENT_NAME: &str = "client.warden.test";
/// A name rsyslog does not permit.
pub const OTHER_NAME: &str = "other.warden.test";

const GTLS_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/rsyslog",
    "/usr/lib/aarch64-linux-gnu/rsyslog",
    "/usr/lib/rsyslog",
    "/usr/lib64/rsyslog",
];

fn find_rsyslogd() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("rsyslogd"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push("/usr/sbin/rsyslogd".into());
    candidates.push("/sbin/rsyslogd".into());
    candidates.into_iter().find(|p| p.is_file())
}

/// True when rsyslog with the gtls driver can run; see the module documentation otherwise.
pub fn rsyslog_available() -> bool {
    let missing = match find_rsyslogd() {
        None => Some("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)"),
        Some(_)
            if !GTLS_DIRS
                .iter()
                .any(|d| Path::new(d).join("lmnsd_gtls.so").is_file()) =>
        {
            Some(
                "rsyslog's gtls driver (lmnsd_gtls.so) is missing (apt-get install rsyslog-gnutls)",
            )
        }
        Some(_) => None,
    };
    match missing {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the real-rsyslog integration tests cannot run: {why}")
        }
        Some(why) => {
            eprintln!("SKIP: {why}");
            false
        }
    }
}

/// A key pair and certificate, written as PEM files (key 0600).
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

enum Role<'a> {
    Ca,
    Server(&'a [&'a str]),
    Client(&'a str),
}

fn issue(
    dir: &Path,
    file: &str,
    cn: &str,
    role: Role<'_>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> Issued {
    let key = new_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(7).unwrap())
        .unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    if let Some((ca, _)) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(ca), None))
            .unwrap();
        b.append_extension(aki).unwrap();
    }
    match role {
        Role::Ca => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Role::Server(sans) => {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(
                ExtendedKeyUsage::new()
                    .server_auth()
                    .client_auth()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                if s.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(s);
                } else {
                    san.dns(s);
                }
            }
            let san = san.build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None));
            b.append_extension(san.unwrap()).unwrap();
        }
        Role::Client(dns) => {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
                .unwrap();
            let san = SubjectAlternativeName::new()
                .dns(dns)
                .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
    }
    let signer = issuer.map_or(&key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let cert_path = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    write_private(&key_path, &key.private_key_to_pem_pkcs8().unwrap());
    Issued {
        cert,
        key,
        cert_path,
        key_path,
    }
}

/// Writes a file with mode 0600 (warden refuses keys readable by others).
pub fn write_private(path: &Path, content: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    f.write_all(content).unwrap();
}

/// The throwaway PKI: one CA with a server and two clients, and an unrelated CA with a client
/// that carries the permitted name.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Issued,
    pub server: Issued,
    pub client: Issued,
    pub client_wrong_name: Issued,
    pub other_ca: Issued,
    pub client_other_ca: Issued,
}

impl Pki {
    pub fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ca = issue(dir, "ca", "warden test CA", Role::Ca, None);
        let server = issue(
            dir,
            "server",
            "localhost",
            Role::Server(&["localhost", "127.0.0.1"]),
            Some((&ca.cert, &ca.key)),
        );
        let client = issue(
            dir,
            "client",
            CLIENT_NAME,
            Role::Client(CLIENT_NAME),
            Some((&ca.cert, &ca.key)),
        );
        let client_wrong_name = issue(
            dir,
            "client-wrong-name",
            OTHER_NAME,
            Role::Client(OTHER_NAME),
            Some((&ca.cert, &ca.key)),
        );
        let other_ca = issue(dir, "other-ca", "unrelated CA", Role::Ca, None);
        let client_other_ca = issue(
            dir,
            "client-other-ca",
            CLIENT_NAME,
            Role::Client(CLIENT_NAME),
            Some((&other_ca.cert, &other_ca.key)),
        );
        Self {
            dir: dir.to_path_buf(),
            ca,
            server,
            client,
            client_wrong_name,
            other_ca,
            client_other_ca,
        }
    }
}

/// A port that was free a moment ago (rsyslog binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A foreground rsyslogd; killed on drop.
pub struct Rsyslog {
    pub port: u16,
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub output: PathBuf,
    child: Option<Child>,
}

impl Rsyslog {
    /// Writes the configuration and starts rsyslog on `port`, waiting until it listens.
    pub fn start(dir: &Path, pki: &Pki, port: u16) -> Self {
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let output = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        let text = format!(
            r#"# warden integration test: TLS syslog receiver (RFC 5425), x509/name client auth
global(
  workDirectory="{work}"
  maxMessageSize="64k"
  parser.escapeControlCharactersOnReceive="off"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp"
  streamDriver.name="gtls"
  streamDriver.mode="1"
  streamDriver.authMode="x509/name"
  permittedPeer=["{peer}"])
template(name="rawline" type="string" string="%rawmsg%\n")
ruleset(name="fromwarden") {{
  action(type="omfile" file="{output}" template="rawline")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="fromwarden")
"#,
            work = dir.join("work").display(),
            ca = pki.ca.cert_path.display(),
            cert = pki.server.cert_path.display(),
            key = pki.server.key_path.display(),
            peer = CLIENT_NAME,
            output = output.display(),
        );
        std::fs::write(&conf, text).unwrap();
        let mut r = Self {
            port,
            dir: dir.to_path_buf(),
            conf,
            output,
            child: None,
        };
        r.restart();
        r
    }

    /// (Re)starts rsyslogd on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslog is already running");
        let rsyslogd = find_rsyslogd().expect("rsyslogd");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .unwrap();
        let child = Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rsyslogd exited with {status} before listening; its output:\n{}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < STARTUP_TIMEOUT,
                "rsyslogd did not listen on {addr} within {STARTUP_TIMEOUT:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd (SIGTERM, then SIGKILL if it lingers) and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
    }

    /// Every message received so far (one per line; warden's messages contain no raw newline).
    pub fn received(&self) -> Vec<String> {
        match std::fs::read_to_string(&self.output) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Polls until `done(received)` holds; panics with the received lines after the timeout.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < ARRIVAL_TIMEOUT,
                "timed out waiting for {what}; received {} lines:\n{}\nrsyslogd said:\n{}",
                got.len(),
                got.join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CEF message split into header fields and extension pairs, unescaped (a small independent
/// parser, so the tests do not trust the code they test).
#[derive(Debug)]
pub struct ParsedCef {
    pub header: Vec<String>,
    pub ext: Vec<(String, String)>,
}

impl ParsedCef {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.ext
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `CEF:0|v|p|ver|sig|name|sev|ext` per the CEF rules: header pipes escaped as `\|`,
/// extension values end where the next ` key=` starts, `\=`, `\\`, `\n`, `\r` unescaped.
pub fn parse_cef(text: &str) -> Option<ParsedCef> {
    let rest = text.strip_prefix("CEF:")?;
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while header.len() < 7 {
        match chars.next()? {
            '\\' => cur.push(chars.next()?),
            '|' => header.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    let ext_text: String = chars.collect();
    // Find unescaped '=' positions, and the key before each.
    let bytes: Vec<char> = ext_text.chars().collect();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == '\\' {
            i += 2;
            continue;
        }
        if bytes[i] == '=' {
            eqs.push(i);
        }
        i += 1;
    }
    let mut ext = Vec::new();
    let key_start = |eq: usize| -> usize {
        let mut s = eq;
        while s > 0 && bytes[s - 1].is_ascii_alphanumeric() {
            s -= 1;
        }
        s
    };
    for (n, &eq) in eqs.iter().enumerate() {
        let ks = key_start(eq);
        let key: String = bytes[ks..eq].iter().collect();
        let end = match eqs.get(n + 1) {
            Some(&next) => key_start(next).saturating_sub(1),
            None => bytes.len(),
        };
        let raw: String = bytes[eq + 1..end.max(eq + 1)].iter().collect();
        let mut value = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(o) => value.push(o),
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        ext.push((key, value));
    }
    Some(ParsedCef { header, ext })
}

/// The CEF part of an RFC 5424 line (after the structured data).
pub fn cef_of(line: &str) -> Option<ParsedCef> {
    let at = line.find("CEF:0|")?;
    parse_cef(&line[at..])
}

/// The `warden_seq` (`cn1`) of a received line.
pub fn seq_of(line: &str) -> Option<u64> {
    cef_of(line)?.get("cn1")?.parse().ok()
}
