//! PSK-TLS with OpenSSL: cipher groups, the server and client contexts, the per-connection
//! handshake trace, and the classification of handshake failures.
//!
//! Keys come from the [`KeyCache`] inside OpenSSL's PSK callback, which also records the
//! identity the card offered (in TLS 1.3, `SslRef::psk_identity` returns nothing, so the
//! callback is the only place to learn it) and whether it was known. OpenSSL's message
//! callback ([`ffi`]) records every handshake message and alert in the connection's
//! [`ConnTrace`], so an interrupted handshake can say how far it got, and a failure can say
//! which alert went out.
//!
//! What OpenSSL 3.0 does (checked with these tests): a wrong key gets alert 20 (bad_record_mac)
//! in TLS 1.2 and 47 (illegal_parameter, the binder does not verify) in TLS 1.3; an unknown
//! identity gets 115 (unknown_psk_identity) in TLS 1.2 and 40 (handshake_failure) in TLS 1.3.
//! A mismatch is told from other failures by "the identity was known in the callback" plus the
//! alert we sent.

mod ffi;

use std::sync::{Arc, Mutex, OnceLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslRef,
    SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use serde::Serialize;

use crate::keys::{KeyCache, Psk};

/// One cipher suite: its IANA name (as in GP Amendment B) and OpenSSL's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub iana: &'static str,
    pub openssl: &'static str,
}

const fn suite(iana: &'static str, openssl: &'static str) -> Suite {
    Suite { iana, openssl }
}

/// Production suites (TLS 1.2): GP Amendment B v1.2's mandatory suite and the seed's SHA-384 one.
pub const PRODUCTION: &[Suite] = &[
    suite("TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256"),
    suite("TLS_PSK_WITH_AES_256_CBC_SHA384", "PSK-AES256-CBC-SHA384"),
];
/// Legacy suites, deprecated in Amendment B v1.2 (TLS 1.0 / 1.1 era); enabling them also
/// allows TLS 1.0 and 1.1.
pub const LEGACY: &[Suite] = &[
    suite("TLS_PSK_WITH_AES_128_CBC_SHA", "PSK-AES128-CBC-SHA"),
    suite("TLS_PSK_WITH_AES_256_CBC_SHA", "PSK-AES256-CBC-SHA"),
    suite("TLS_PSK_WITH_3DES_EDE_CBC_SHA", "PSK-3DES-EDE-CBC-SHA"),
];
/// NULL suites: integrity only, no encryption. Testing only; off unless enabled.
pub const NULL: &[Suite] = &[
    suite("TLS_PSK_WITH_NULL_SHA256", "PSK-NULL-SHA256"),
    suite("TLS_PSK_WITH_NULL_SHA", "PSK-NULL-SHA"),
];
/// TLS 1.3 suites in PSK mode (Amendment B v1.2); the name is the same in both conventions.
pub const TLS13: &[&str] = &["TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_SHA256"];

/// Which cipher groups the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CipherGroups {
    pub production: bool,
    pub legacy: bool,
    pub null: bool,
    pub tls13: bool,
}

impl Default for CipherGroups {
    fn default() -> Self {
        Self {
            production: true,
            legacy: false,
            null: false,
            tls13: true,
        }
    }
}

/// The groups resolved against the OpenSSL this process links.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedCiphers {
    /// TLS 1.2 and older suites, OpenSSL names, in preference order.
    pub tls12: Vec<&'static str>,
    pub tls13: Vec<&'static str>,
    /// Suites the configuration asks for that this OpenSSL does not have (e.g. 3DES in
    /// OpenSSL 3 builds without the legacy ciphers).
    pub unavailable: Vec<&'static str>,
    pub null_enabled: bool,
    pub min_version: &'static str,
    pub max_version: &'static str,
}

impl ResolvedCiphers {
    /// Every enabled suite, OpenSSL names.
    pub fn all(&self) -> Vec<&'static str> {
        self.tls12
            .iter()
            .chain(self.tls13.iter())
            .copied()
            .collect()
    }
}

/// Why a TLS context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("OpenSSL")]
    OpenSsl(#[from] ErrorStack),
    #[error("none of the configured cipher suites is available in this OpenSSL")]
    NoSuites,
}

fn suite_available(name: &str) -> bool {
    SslContextBuilder::new(SslMethod::tls())
        .and_then(|mut b| b.set_cipher_list(&format!("{name}:@SECLEVEL=0")))
        .is_ok()
}

// Implements: O5, O6, O7, O8
/// Resolves the groups: which suites, which protocol versions.
pub fn resolve(groups: CipherGroups) -> Result<ResolvedCiphers, TlsError> {
    let mut tls12 = Vec::new();
    let mut unavailable = Vec::new();
    let mut wanted: Vec<&Suite> = Vec::new();
    if groups.production {
        wanted.extend(PRODUCTION);
    }
    if groups.legacy {
        wanted.extend(LEGACY);
    }
    if groups.null {
        wanted.extend(NULL);
    }
    for s in wanted {
        if suite_available(s.openssl) {
            tls12.push(s.openssl);
        } else {
            unavailable.push(s.openssl);
        }
    }
    let tls13: Vec<&'static str> = if groups.tls13 {
        TLS13.to_vec()
    } else {
        Vec::new()
    };
    if tls12.is_empty() && tls13.is_empty() {
        return Err(TlsError::NoSuites);
    }
    let min_version = if tls12.is_empty() {
        "TLSv1.3"
    } else if groups.legacy {
        "TLSv1"
    } else {
        "TLSv1.2"
    };
    let max_version = if tls13.is_empty() {
        "TLSv1.2"
    } else {
        "TLSv1.3"
    };
    Ok(ResolvedCiphers {
        null_enabled: tls12.iter().any(|s| s.contains("NULL")),
        tls12,
        tls13,
        unavailable,
        min_version,
        max_version,
    })
}

fn version(name: &str) -> SslVersion {
    match name {
        "TLSv1" => SslVersion::TLS1,
        "TLSv1.1" => SslVersion::TLS1_1,
        "TLSv1.3" => SslVersion::TLS1_3,
        _ => SslVersion::TLS1_2,
    }
}

// Implements: O69
/// TLS alert descriptions (RFC 5246 §7.2, RFC 8446 §6, RFC 4279).
pub fn alert_name(code: u8) -> &'static str {
    match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        47 => "illegal_parameter",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        115 => "unknown_psk_identity",
        120 => "no_application_protocol",
        _ => "unknown_alert",
    }
}

/// TLS handshake message names (RFC 5246 §7.4, RFC 8446 §4).
pub fn handshake_name(kind: u8) -> &'static str {
    match kind {
        0 => "HelloRequest",
        1 => "ClientHello",
        2 => "ServerHello",
        4 => "NewSessionTicket",
        5 => "EndOfEarlyData",
        8 => "EncryptedExtensions",
        11 => "Certificate",
        12 => "ServerKeyExchange",
        13 => "CertificateRequest",
        14 => "ServerHelloDone",
        15 => "CertificateVerify",
        16 => "ClientKeyExchange",
        20 => "Finished",
        24 => "KeyUpdate",
        _ => "Unknown",
    }
}

/// An alert with its code and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub code: u8,
    pub name: &'static str,
    pub fatal: bool,
}

// Implements: O19, O68
/// What the handshake got to: the seed's `HandshakeState`, filled from OpenSSL's message
/// callback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HandshakeProgress {
    pub client_hello_received: bool,
    pub server_hello_sent: bool,
    pub client_key_exchange_received: bool,
    pub finished_received: bool,
    /// The last handshake message received from the peer.
    pub last_message_received: Option<&'static str>,
    /// The last handshake message we sent.
    pub last_message_sent: Option<&'static str>,
    /// The last handshake message seen either way.
    pub last_message_type: Option<&'static str>,
    /// The PSK identity the peer offered (never the key).
    pub identity: Option<String>,
    /// Whether that identity was in the key store.
    pub identity_known: Option<bool>,
    pub alert_sent: Option<Alert>,
    pub alert_received: Option<Alert>,
    /// The TLS 1.3 PSK key exchange modes the ClientHello offered (`psk_ke`, `psk_dhe_ke`).
    pub psk_kex_modes: Option<Vec<&'static str>>,
}

impl HandshakeProgress {
    /// Nothing after the ClientHello: typical of a network cut or a client that gave up.
    pub fn client_hello_only(&self) -> bool {
        self.client_hello_received && !self.client_key_exchange_received && !self.finished_received
    }
}

/// Per-connection record shared with OpenSSL's callbacks.
#[derive(Default)]
pub struct ConnTrace {
    progress: Mutex<HandshakeProgress>,
    /// The key the PSK callback handed OpenSSL: the connection is the card's only while it is
    /// still the card's key.
    psk: Mutex<Option<Arc<Psk>>>,
}

impl ConnTrace {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn snapshot(&self) -> HandshakeProgress {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key the handshake was made with (`None` before the PSK callback ran).
    pub fn psk(&self) -> Option<Arc<Psk>> {
        self.psk.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut HandshakeProgress)) {
        let mut guard = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }
}

fn trace_index() -> Index<Ssl, Arc<ConnTrace>> {
    static INDEX: OnceLock<Index<Ssl, Arc<ConnTrace>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL allocates an ex_data index"))
}

/// TLS 1.3 `psk_key_exchange_modes` values (RFC 8446 §4.2.9).
pub fn psk_kex_mode_name(mode: u8) -> &'static str {
    match mode {
        0 => "psk_ke",
        1 => "psk_dhe_ke",
        _ => "unknown",
    }
}

/// What a TLS 1.3 ClientHello offers for PSK: its `psk_key_exchange_modes` and the first
/// identity of its `pre_shared_key` extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloPsk {
    pub kex_modes: Option<Vec<u8>>,
    pub identity: Option<String>,
}

/// Reads [`ClientHelloPsk`] from a ClientHello handshake message (type, 3-byte length, body);
/// `None` if it does not parse.
pub fn client_hello_psk(message: &[u8]) -> Option<ClientHelloPsk> {
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = rest;
            Some(head)
        }
        fn len8(&mut self) -> Option<&'a [u8]> {
            let n = usize::from(*self.take(1)?.first()?);
            self.take(n)
        }
        fn len16(&mut self) -> Option<&'a [u8]> {
            let n = self.take(2)?;
            self.take(usize::from(u16::from_be_bytes([n[0], n[1]])))
        }
    }
    let mut m = Cursor(message);
    if m.take(1)? != [1] {
        return None;
    }
    let len = m.take(3)?;
    let len = usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
    let mut body = Cursor(m.take(len)?);
    body.take(2 + 32)?; // legacy_version, random
    body.len8()?; // legacy_session_id
    body.len16()?; // cipher_suites
    body.len8()?; // legacy_compression_methods
    let mut exts = Cursor(body.len16()?);
    let mut out = ClientHelloPsk::default();
    while !exts.0.is_empty() {
        let kind = exts.take(2)?;
        let mut data = Cursor(exts.len16()?);
        match kind {
            [0, 45] => out.kex_modes = Some(data.len8()?.to_vec()),
            [0, 41] => {
                let identity = Cursor(data.len16()?).len16()?;
                out.identity = Some(String::from_utf8_lossy(identity).into_owned());
            }
            _ => {}
        }
    }
    Some(out)
}

/// Called from the message callback with each protocol message.
fn observe(ssl: &SslRef, sent: bool, content_type: i32, message: &[u8]) {
    let Some(trace) = ssl.ex_data(trace_index()) else {
        return;
    };
    if content_type == 22 && !sent && message.first() == Some(&1) {
        if let Some(hello) = client_hello_psk(message) {
            trace.update(|p| {
                p.psk_kex_modes = hello
                    .kex_modes
                    .map(|modes| modes.iter().map(|m| psk_kex_mode_name(*m)).collect());
                // The PSK callback, if OpenSSL calls it, records the identity it looked up.
                p.identity = p.identity.take().or(hello.identity);
            });
        }
    }
    let head = &message[..message.len().min(2)];
    match (content_type, head) {
        // Handshake message: first byte is its type.
        (22, [kind, ..]) => {
            let name = handshake_name(*kind);
            trace.update(|p| {
                p.last_message_type = Some(name);
                if sent {
                    p.last_message_sent = Some(name);
                    if *kind == 2 {
                        p.server_hello_sent = true;
                    }
                } else {
                    p.last_message_received = Some(name);
                    match *kind {
                        1 => p.client_hello_received = true,
                        16 => p.client_key_exchange_received = true,
                        20 => p.finished_received = true,
                        _ => {}
                    }
                }
            });
        }
        // Alert: level, description.
        (21, [level, desc]) => {
            let alert = Alert {
                code: *desc,
                name: alert_name(*desc),
                fatal: *level == 2,
            };
            trace.update(|p| {
                if sent {
                    p.alert_sent.get_or_insert(alert);
                } else {
                    p.alert_received.get_or_insert(alert);
                }
            });
        }
        _ => {}
    }
}

fn base_builder(
    method: SslMethod,
    resolved: &ResolvedCiphers,
) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContextBuilder::new(method)?;
    b.set_min_proto_version(Some(version(resolved.min_version)))?;
    b.set_max_proto_version(Some(version(resolved.max_version)))?;
    if resolved.null_enabled
        || resolved.min_version != "TLSv1.2" && resolved.min_version != "TLSv1.3"
    {
        // NULL suites and TLS 1.0/1.1 negotiate only at security level 0 in OpenSSL 3.
        b.set_security_level(0);
    }
    let list = if resolved.tls12.is_empty() {
        // Only TLS 1.3 is enabled; the 1.2 list is never used but must not be empty.
        "PSK-AES128-CBC-SHA256".to_string()
    } else {
        resolved.tls12.join(":")
    };
    b.set_cipher_list(&list)?;
    if !resolved.tls13.is_empty() {
        b.set_ciphersuites(&resolved.tls13.join(":"))?;
    }
    b.set_options(SslOptions::NO_COMPRESSION | SslOptions::NO_RENEGOTIATION);
    // Idle connections give their read and write buffers back: thousands of held sessions.
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_verify(SslVerifyMode::NONE);
    ffi::install_message_callback(&mut b);
    Ok(b)
}

// Implements: V59, O1, O4
/// The server's TLS context: PSK callback into the key cache, cipher groups, trace.
#[derive(Clone)]
pub struct ServerTls {
    ctx: SslContext,
    resolved: ResolvedCiphers,
}

impl ServerTls {
    pub fn new(groups: CipherGroups, keys: KeyCache) -> Result<Self, TlsError> {
        let resolved = resolve(groups)?;
        let mut b = base_builder(SslMethod::tls_server(), &resolved)?;
        // No resumption: cards reconnect with a full PSK handshake (no asymmetric crypto, so
        // it is cheap), and TLS 1.2 tickets (a session serialised and encrypted per handshake),
        // TLS 1.3 tickets and the server's session cache (an insert per handshake and a
        // periodic sweep) would cost CPU and memory for nothing.
        b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::NO_TICKET);
        b.set_num_tickets(0)?;
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        // Read what the socket has, not a record header and then its body: one `recv` per
        // request instead of two (the bytes read ahead are returned by the next `SSL_read`).
        b.set_read_ahead(true);
        b.set_psk_server_callback(move |ssl, identity, out| {
            let trace = ssl.ex_data(trace_index()).cloned();
            let identity = identity.map(|i| String::from_utf8_lossy(i).into_owned());
            let key = identity.as_deref().and_then(|id| keys.get(id));
            if let Some(trace) = &trace {
                trace.update(|p| {
                    p.identity = identity.clone();
                    p.identity_known = Some(key.is_some());
                });
                *trace.psk.lock().unwrap_or_else(|e| e.into_inner()) = key.clone();
            }
            match key {
                Some(psk) if psk.len() <= out.len() => {
                    out[..psk.len()].copy_from_slice(psk.expose_secret());
                    Ok(psk.len())
                }
                // 0: unknown identity; OpenSSL answers with the proper alert.
                _ => Ok(0),
            }
        });
        Ok(Self {
            ctx: b.build(),
            resolved,
        })
    }

    pub fn resolved(&self) -> &ResolvedCiphers {
        &self.resolved
    }

    /// A new server-side connection carrying `trace`.
    pub fn new_ssl(&self, trace: Arc<ConnTrace>) -> Result<Ssl, ErrorStack> {
        let mut ssl = Ssl::new(&self.ctx)?;
        ssl.set_ex_data(trace_index(), trace);
        Ok(ssl)
    }
}

/// TLS choices of a client (the UICC simulator, the load generator).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// `TLSv1`, `TLSv1.1`, `TLSv1.2` or `TLSv1.3`; by default the best both sides have.
    pub version: Option<String>,
    /// OpenSSL names of TLS 1.2 suites to offer (default: the production group).
    pub ciphers: Option<String>,
    /// TLS 1.3 suites to offer (default: both Amendment B suites).
    pub ciphersuites: Option<String>,
}

/// A client context that offers `identity` with `psk`.
pub fn client_context(
    identity: &str,
    psk: Arc<Psk>,
    options: &ClientTlsOptions,
) -> Result<SslContext, TlsError> {
    let resolved = ResolvedCiphers {
        tls12: Vec::new(),
        tls13: TLS13.to_vec(),
        unavailable: Vec::new(),
        null_enabled: false,
        min_version: "TLSv1",
        max_version: "TLSv1.3",
    };
    let mut b = SslContextBuilder::new(SslMethod::tls_client())?;
    match options.version.as_deref() {
        Some(v) => {
            b.set_min_proto_version(Some(version(v)))?;
            b.set_max_proto_version(Some(version(v)))?;
        }
        None => {
            b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
            b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
        }
    }
    let ciphers = options.ciphers.clone().unwrap_or_else(|| {
        PRODUCTION
            .iter()
            .map(|s| s.openssl)
            .collect::<Vec<_>>()
            .join(":")
    });
    let low =
        ciphers.contains("NULL") || matches!(options.version.as_deref(), Some("TLSv1" | "TLSv1.1"));
    if low {
        b.set_security_level(0);
    }
    b.set_cipher_list(&ciphers)?;
    b.set_ciphersuites(
        options
            .ciphersuites
            .as_deref()
            .unwrap_or(&resolved.tls13.join(":")),
    )?;
    b.set_verify(SslVerifyMode::NONE);
    b.set_options(SslOptions::NO_COMPRESSION);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    ffi::install_message_callback(&mut b);
    let identity = identity.as_bytes().to_vec();
    b.set_psk_client_callback(move |_ssl, _hint, id_out, psk_out| {
        // The identity is written NUL-terminated.
        if identity.len() + 1 > id_out.len() || psk.len() > psk_out.len() {
            return Ok(0);
        }
        id_out[..identity.len()].copy_from_slice(&identity);
        id_out[identity.len()] = 0;
        psk_out[..psk.len()].copy_from_slice(psk.expose_secret());
        Ok(psk.len())
    });
    Ok(b.build())
}

/// A client connection carrying `trace`.
pub fn client_ssl(ctx: &SslContext, trace: Arc<ConnTrace>) -> Result<Ssl, ErrorStack> {
    let mut ssl = Ssl::new(ctx)?;
    ssl.set_ex_data(trace_index(), trace);
    Ok(ssl)
}

/// Why a handshake failed, sorted by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The identity is known but the key differs (the card's or ours is wrong).
    PskMismatch,
    /// The identity is not in the key store.
    UnknownIdentity,
    /// No cipher suite in common (e.g. a NULL-only client while NULL is disabled).
    NoSharedCipher,
    /// No protocol version in common.
    ProtocolVersion,
    /// A TLS 1.3 client offered only `psk_ke` (PSK without (EC)DHE); the server requires
    /// `psk_dhe_ke`, for forward secrecy.
    PskKeOnly,
    /// Not a TLS handshake at all (garbage, plain HTTP).
    NotTls,
    /// The peer closed or reset the connection mid-handshake, without an alert from us.
    Interrupted,
    /// The handshake did not finish within the handshake timeout.
    Timeout,
    /// Dropped to make room: too many handshakes at once, this one the oldest.
    Evicted,
    /// The server is shutting down.
    Shutdown,
    /// Anything else OpenSSL refused.
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PskMismatch => "psk_mismatch",
            Self::UnknownIdentity => "unknown_identity",
            Self::NoSharedCipher => "no_shared_cipher",
            Self::ProtocolVersion => "protocol_version",
            Self::PskKeOnly => "psk_ke_only",
            Self::NotTls => "not_tls",
            Self::Interrupted => "interrupted",
            Self::Timeout => "timeout",
            Self::Evicted => "evicted",
            Self::Shutdown => "shutdown",
            Self::Other => "other",
        }
    }

    /// An interruption (the handshake state is worth reporting) rather than a refusal.
    pub fn is_interruption(self) -> bool {
        matches!(
            self,
            Self::Interrupted | Self::Timeout | Self::Evicted | Self::Shutdown
        )
    }
}

// Implements: O17, O44
/// Sorts a failed `accept` by cause, from the error and what the trace saw.
pub fn classify(
    error: &openssl::ssl::Error,
    progress: &HandshakeProgress,
) -> (FailureKind, String) {
    let reason = match error.ssl_error() {
        Some(stack) => stack
            .errors()
            .iter()
            .map(|e| e.reason().unwrap_or("unknown").to_string())
            .collect::<Vec<_>>()
            .join("; "),
        None => match error.io_error() {
            Some(io) => io.to_string(),
            None => "connection closed".to_string(),
        },
    };
    let lower = reason.to_ascii_lowercase();
    let alert = progress.alert_sent.map(|a| a.code);
    let psk_ke_only = progress
        .psk_kex_modes
        .as_ref()
        .is_some_and(|m| !m.contains(&"psk_dhe_ke"));
    if psk_ke_only && progress.identity_known != Some(true) {
        return (FailureKind::PskKeOnly, format!(
            "the client offered only the TLS 1.3 PSK mode psk_ke (no (EC)DHE), and this server requires psk_dhe_ke: \
             configure the card to offer psk_dhe_ke with a key_share (OpenSSL accepts psk_ke only with \
             SSL_OP_ALLOW_NO_DHE_KEX, which warden does not set, to keep forward secrecy), or use TLS 1.2 PSK; \
             OpenSSL: {reason}"
        ));
    }
    let kind = if progress.identity_known == Some(false) {
        FailureKind::UnknownIdentity
    } else if progress.identity_known == Some(true)
        && (matches!(alert, Some(20 | 47 | 51))
            || lower.contains("bad record mac")
            || lower.contains("decrypt")
            || lower.contains("binder"))
    {
        FailureKind::PskMismatch
    } else if lower.contains("no shared cipher") {
        FailureKind::NoSharedCipher
    } else if lower.contains("unsupported protocol")
        || lower.contains("version too low")
        || lower.contains("no protocols available")
        || alert == Some(70)
    {
        FailureKind::ProtocolVersion
    } else if lower.contains("wrong version number")
        || lower.contains("http request")
        || lower.contains("packet length too long")
        || lower.contains("record layer failure")
        || lower.contains("unknown protocol")
        || (!progress.client_hello_received && alert.is_some())
    {
        FailureKind::NotTls
    } else if alert.is_none() {
        FailureKind::Interrupted
    } else {
        FailureKind::Other
    };
    (kind, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: O5, O6, O7, O8
    #[test]
    fn groups_resolve_to_suites_and_versions() {
        let r = resolve(CipherGroups::default()).unwrap();
        assert_eq!(
            r.tls12,
            vec!["PSK-AES128-CBC-SHA256", "PSK-AES256-CBC-SHA384"]
        );
        assert_eq!(r.tls13, TLS13.to_vec());
        assert_eq!((r.min_version, r.max_version), ("TLSv1.2", "TLSv1.3"));
        assert!(!r.null_enabled);
        let r = resolve(CipherGroups {
            production: true,
            legacy: true,
            null: true,
            tls13: false,
        })
        .unwrap();
        assert!(r.null_enabled);
        assert!(r.tls12.contains(&"PSK-NULL-SHA256") && r.tls12.contains(&"PSK-AES128-CBC-SHA"));
        assert_eq!((r.min_version, r.max_version), ("TLSv1", "TLSv1.2"));
        // Every configured suite is either offered or reported missing.
        assert_eq!(r.tls12.len() + r.unavailable.len(), 7);
        let r = resolve(CipherGroups {
            production: false,
            legacy: false,
            null: false,
            tls13: true,
        })
        .unwrap();
        assert_eq!(r.min_version, "TLSv1.3");
        ServerTls::new(
            CipherGroups {
                production: false,
                legacy: false,
                null: false,
                tls13: true,
            },
            KeyCache::new(),
        )
        .unwrap();
    }

    /// A ClientHello with `psk_key_exchange_modes` = `modes` (and a few other extensions).
    pub(crate) fn client_hello(modes: &[u8]) -> Vec<u8> {
        let ext = |kind: u16, data: &[u8]| {
            let mut v = kind.to_be_bytes().to_vec();
            v.extend_from_slice(&(data.len() as u16).to_be_bytes());
            v.extend_from_slice(data);
            v
        };
        let mut kex = vec![modes.len() as u8];
        kex.extend_from_slice(modes);
        let mut exts = ext(43, &[2, 3, 4]);
        exts.extend(ext(45, &kex));
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut m = vec![1, 0];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend(body);
        m
    }

    #[test]
    fn client_hello_psk_modes_are_read() {
        let modes = |m: &[u8]| client_hello_psk(&client_hello(m)).unwrap().kex_modes;
        assert_eq!(modes(&[0]), Some(vec![0]));
        assert_eq!(modes(&[1, 0]), Some(vec![1, 0]));
        let hello = client_hello(&[1]);
        for cut in 0..hello.len() {
            assert_eq!(client_hello_psk(&hello[..cut]), None, "cut {cut}");
        }
        assert_eq!(client_hello_psk(&[2, 0, 0, 0]), None);
        assert_eq!(psk_kex_mode_name(0), "psk_ke");
        assert_eq!(psk_kex_mode_name(1), "psk_dhe_ke");
    }

    /// Verifies: O69
    #[test]
    fn names() {
        assert_eq!(alert_name(20), "bad_record_mac");
        assert_eq!(alert_name(115), "unknown_psk_identity");
        assert_eq!(handshake_name(16), "ClientKeyExchange");
    }
}
