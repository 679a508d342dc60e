//! The mutual-TLS client: OpenSSL context (TLS ≥ 1.2, the configured CA only, server name
//! checked, client certificate and key), connecting, and sorting every failure by its cause.
//!
//! # How a refused client certificate shows
//!
//! With TLS 1.3 the client finishes its handshake before the server has looked at the client
//! certificate. A server that refuses it either sends an alert (`bad_certificate`,
//! `unknown_ca`, `certificate_required`, …), which arrives on the first read, or — rsyslog's
//! gtls driver with `x509/name` does this — simply closes the TCP connection without a word.
//! [`classify_close`] therefore reports a close that comes right after the handshake, before
//! anything written on the connection was confirmed, as [`LinkError::ClientCertRejected`], and
//! a close later on as [`LinkError::PeerClosed`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAlert, SslConnector, SslMethod, SslVersion};
use openssl::x509::X509;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use warden_core::fsx;
use warden_core::report::report;
use warden_core::sealed_config::ConfigSealer;
use warden_core::secret::SecretBytes;

use crate::config::{Endpoint, SiemSettings, Timeouts, TlsFiles};

/// An established, verified TLS connection to the SIEM.
pub type TlsConnection = SslStream<TcpStream>;

/// Certificate and key files larger than this are refused.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

// X509_V_ERR_* values from OpenSSL's x509_vfy.h (not exported by the `openssl` crate).
const X509_V_ERR_HOSTNAME_MISMATCH: i32 = 62;
const X509_V_ERR_IP_ADDRESS_MISMATCH: i32 = 64;

/// Why the TLS client could not be set up from its files. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("client certificate {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("client key {path}: {reason}")]
    ClientKey { path: PathBuf, reason: String },
    #[error("client key {path} is sealed; the `config` key is needed to open it")]
    SealedKeyNeedsConfigKey { path: PathBuf },
    #[error("client key {path} and client certificate {cert} do not belong together")]
    KeyMismatch { path: PathBuf, cert: PathBuf },
    #[error("OpenSSL refused the TLS settings")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// The step at which a connection attempt or an established connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Handshake,
    Write,
    Read,
    Shutdown,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Connect => "TCP connect",
            Stage::Handshake => "TLS handshake",
            Stage::Write => "write",
            Stage::Read => "read",
            Stage::Shutdown => "TLS shutdown",
        })
    }
}

/// Why talking to the SIEM failed, sorted by cause (see [`LinkError::kind`]).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("connection to {addr} refused (nothing listens there, or a firewall rejects it)")]
    Refused { addr: SocketAddr },
    #[error("{stage} timed out after {after:?}")]
    Timeout { stage: Stage, after: Duration },
    #[error("the server certificate is not trusted: {reason}")]
    ServerCertUntrusted { reason: String },
    #[error("the server certificate is not valid for the name {expected:?}")]
    NameMismatch { expected: String },
    #[error("the server rejected the client certificate: {detail}")]
    ClientCertRejected { detail: String },
    #[error("TLS protocol error during {stage}: {detail}")]
    Tls { stage: Stage, detail: String },
    #[error("the server closed the connection")]
    PeerClosed,
    #[error("{stage}")]
    Io { stage: Stage, source: io::Error },
}

/// [`LinkError`] without its details: for tests, metrics and hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Address,
    Refused,
    Timeout,
    ServerCertUntrusted,
    NameMismatch,
    ClientCertRejected,
    Tls,
    PeerClosed,
    Io,
}

impl LinkError {
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Resolve { .. } => FailureKind::Address,
            Self::Refused { .. } => FailureKind::Refused,
            Self::Timeout { .. } => FailureKind::Timeout,
            Self::ServerCertUntrusted { .. } => FailureKind::ServerCertUntrusted,
            Self::NameMismatch { .. } => FailureKind::NameMismatch,
            Self::ClientCertRejected { .. } => FailureKind::ClientCertRejected,
            Self::Tls { .. } => FailureKind::Tls,
            Self::PeerClosed => FailureKind::PeerClosed,
            Self::Io { .. } => FailureKind::Io,
        }
    }

    /// What an operator can do about it.
    pub fn hint(&self) -> &'static str {
        match self.kind() {
            FailureKind::Address => "check siem.host (DNS name or IP address)",
            FailureKind::Refused => "check siem.host and siem.port, and that the SIEM's TLS listener (e.g. rsyslog imtcp with gtls) runs",
            FailureKind::Timeout => "the SIEM did not answer in time: check routing and firewalls, or raise siem.timeouts",
            FailureKind::ServerCertUntrusted => "siem.ca_file must hold the CA that signed the SIEM's server certificate (and the certificate must be current)",
            FailureKind::NameMismatch => "siem.server_name (default: siem.host) must match a DNS or IP subjectAltName of the SIEM's certificate",
            FailureKind::ClientCertRejected => "the SIEM must trust the CA of siem.client_cert, and the certificate's name must be one of its permitted peers (rsyslog: PermittedPeer with AuthMode x509/name)",
            FailureKind::Tls => "the SIEM and warden share no TLS version or cipher (warden needs TLS 1.2 or later)",
            FailureKind::PeerClosed => "the SIEM closed the connection; warden reconnects and re-sends what was not confirmed",
            FailureKind::Io => "a network error; warden reconnects with backoff",
        }
    }
}

/// The client certificate chain and its private key. The key has no `Debug` and is never
/// printed.
pub struct ClientIdentity {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl ClientIdentity {
    /// From PEM: the certificate (then intermediates) and the private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &SecretBytes) -> Result<Self, TlsSetupError> {
        let chain = X509::stack_from_pem(cert_pem).map_err(|_| TlsSetupError::ClientCert {
            path: PathBuf::from("(PEM)"),
            reason: "not a PEM certificate".into(),
        })?;
        if chain.is_empty() {
            return Err(TlsSetupError::ClientCert {
                path: PathBuf::from("(PEM)"),
                reason: "no certificate in the file".into(),
            });
        }
        // Deliberately no detail from OpenSSL here: it could describe the key's content.
        let key = PKey::private_key_from_pem(key_pem.expose_secret()).map_err(|_| {
            TlsSetupError::ClientKey {
                path: PathBuf::from("(PEM)"),
                reason: "not an unencrypted PEM private key".into(),
            }
        })?;
        Ok(Self { chain, key })
    }

    /// Reads the certificate (a public file) and the key (0600, ours, no symlink). A key file
    /// sealed with `warden config seal` is opened with `sealer` (the `config` purpose key).
    pub fn load(
        cert: &Path,
        key: &Path,
        sealer: Option<&ConfigSealer>,
    ) -> Result<Self, TlsSetupError> {
        let cert_pem = std::fs::read(cert).map_err(|e| TlsSetupError::ClientCert {
            path: cert.to_path_buf(),
            reason: report(&e),
        })?;
        let raw = SecretBytes::new(fsx::read_private(key, MAX_PEM_BYTES).map_err(|e| {
            TlsSetupError::ClientKey {
                path: key.to_path_buf(),
                reason: report(&e),
            }
        })?);
        let key_pem = if ConfigSealer::looks_sealed(raw.expose_secret()) {
            let sealer = sealer.ok_or_else(|| TlsSetupError::SealedKeyNeedsConfigKey {
                path: key.to_path_buf(),
            })?;
            sealer
                .open(raw.expose_secret())
                .map_err(|e| TlsSetupError::ClientKey {
                    path: key.to_path_buf(),
                    reason: report(&e),
                })?
        } else {
            raw
        };
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            TlsSetupError::ClientCert { reason, .. } => TlsSetupError::ClientCert {
                path: cert.to_path_buf(),
                reason,
            },
            TlsSetupError::ClientKey { reason, .. } => TlsSetupError::ClientKey {
                path: key.to_path_buf(),
                reason,
            },
            other => other,
        })
    }
}

// Implements: S48, V59
/// A configured TLS client for one SIEM endpoint.
pub struct TlsClient {
    connector: SslConnector,
    endpoint: Endpoint,
    timeouts: Timeouts,
}

impl TlsClient {
    /// Builds the client from the files named in the settings.
    pub fn from_settings(
        settings: &SiemSettings,
        sealer: Option<&ConfigSealer>,
    ) -> Result<Self, TlsSetupError> {
        let TlsFiles {
            ca_file,
            client_cert,
            client_key,
        } = &settings.files;
        let identity = ClientIdentity::load(client_cert, client_key, sealer)?;
        Self::new(
            settings.endpoint.clone(),
            settings.timeouts,
            ca_file,
            Some(&identity),
        )
        .map_err(|e| match e {
            TlsSetupError::KeyMismatch { .. } => TlsSetupError::KeyMismatch {
                path: client_key.clone(),
                cert: client_cert.clone(),
            },
            other => other,
        })
    }

    /// A client trusting only the CAs in `ca_file`. `identity` is `None` only to test what a
    /// server does with a client that has no certificate.
    pub fn new(
        endpoint: Endpoint,
        timeouts: Timeouts,
        ca_file: &Path,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, TlsSetupError> {
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        // Only the configured CA: no system trust store.
        let ca_pem = std::fs::read(ca_file).map_err(|e| TlsSetupError::CaFile {
            path: ca_file.to_path_buf(),
            reason: report(&e),
        })?;
        let cas = X509::stack_from_pem(&ca_pem).map_err(|e| TlsSetupError::CaFile {
            path: ca_file.to_path_buf(),
            reason: format!("not PEM certificates: {e}"),
        })?;
        if cas.is_empty() {
            return Err(TlsSetupError::CaFile {
                path: ca_file.to_path_buf(),
                reason: "no certificate in the file".into(),
            });
        }
        let mut store = openssl::x509::store::X509StoreBuilder::new()?;
        for ca in cas {
            store.add_cert(ca)?;
        }
        // Replaces the store `SslConnector::builder` filled from the system default paths.
        b.set_cert_store(store.build());
        if let Some(id) = identity {
            let mut chain = id.chain.iter();
            if let Some(leaf) = chain.next() {
                b.set_certificate(leaf)?;
            }
            for extra in chain {
                b.add_extra_chain_cert(extra.clone())?;
            }
            b.set_private_key(&id.key)?;
            b.check_private_key()
                .map_err(|_| TlsSetupError::KeyMismatch {
                    path: PathBuf::from("(key)"),
                    cert: PathBuf::from("(certificate)"),
                })?;
        }
        Ok(Self {
            connector: b.build(),
            endpoint,
            timeouts,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Resolves, connects (trying each address) and completes the TLS handshake with the server
    /// certificate and name verified.
    pub async fn connect(&self) -> Result<TlsConnection, LinkError> {
        let Endpoint {
            host,
            port,
            server_name,
        } = &self.endpoint;
        let t = self.timeouts;
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(t.connect, tokio::net::lookup_host((host.as_str(), *port)))
                .await
            {
                Err(_) => {
                    return Err(LinkError::Timeout {
                        stage: Stage::Connect,
                        after: t.connect,
                    })
                }
                Ok(Err(e)) => {
                    return Err(LinkError::Resolve {
                        host: host.clone(),
                        detail: report(&e),
                    })
                }
                Ok(Ok(addrs)) => addrs.collect(),
            };
        if addrs.is_empty() {
            return Err(LinkError::Resolve {
                host: host.clone(),
                detail: "no addresses".into(),
            });
        }
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    last = Some(LinkError::Refused { addr });
                }
                Ok(Err(source)) => {
                    last = Some(LinkError::Io {
                        stage: Stage::Connect,
                        source,
                    })
                }
                Err(_) => {
                    last = Some(LinkError::Timeout {
                        stage: Stage::Connect,
                        after: t.connect,
                    })
                }
            }
        }
        let Some(tcp) = tcp else {
            return Err(last.unwrap_or(LinkError::PeerClosed));
        };
        let _ = tcp.set_nodelay(true);
        let ssl = self
            .connector
            .configure()
            .and_then(|c| c.into_ssl(server_name))
            .map_err(|e| LinkError::Tls {
                stage: Stage::Handshake,
                detail: report(&e),
            })?;
        let mut stream = SslStream::new(ssl, tcp).map_err(|e| LinkError::Tls {
            stage: Stage::Handshake,
            detail: report(&e),
        })?;
        match tokio::time::timeout(t.handshake, Pin::new(&mut stream).connect()).await {
            Err(_) => Err(LinkError::Timeout {
                stage: Stage::Handshake,
                after: t.handshake,
            }),
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(classify_handshake(&stream, &e, server_name)),
        }
    }
}

/// Sorts a failed handshake: the verification result first (it says *why* the server was not
/// trusted), then alerts received, then the rest.
fn classify_handshake(
    stream: &TlsConnection,
    err: &openssl::ssl::Error,
    server_name: &str,
) -> LinkError {
    let verify = stream.ssl().verify_result();
    if verify != openssl::x509::X509VerifyResult::OK {
        return match verify.as_raw() {
            X509_V_ERR_HOSTNAME_MISMATCH | X509_V_ERR_IP_ADDRESS_MISMATCH => {
                LinkError::NameMismatch {
                    expected: server_name.to_owned(),
                }
            }
            _ => LinkError::ServerCertUntrusted {
                reason: verify.error_string().to_owned(),
            },
        };
    }
    classify_ssl_error(err, Stage::Handshake)
}

fn alert_in(err: &openssl::ssl::Error) -> Option<SslAlert> {
    err.ssl_error()?
        .errors()
        .iter()
        .find_map(|e| SslAlert::from_reason_code(e.reason_code()))
}

fn is_cert_alert(alert: SslAlert) -> bool {
    [
        SslAlert::BAD_CERTIFICATE,
        SslAlert::UNSUPPORTED_CERTIFICATE,
        SslAlert::CERTIFICATE_REVOKED,
        SslAlert::CERTIFICATE_EXPIRED,
        SslAlert::CERTIFICATE_UNKNOWN,
        SslAlert::UNKNOWN_CA,
        SslAlert::ACCESS_DENIED,
        SslAlert::CERTIFICATE_REQUIRED,
        SslAlert::NO_CERTIFICATE,
    ]
    .contains(&alert)
}

fn is_unexpected_eof(err: &openssl::ssl::Error) -> bool {
    err.ssl_error().is_some_and(|stack| {
        stack
            .errors()
            .iter()
            .any(|e| e.reason().is_some_and(|r| r.contains("unexpected eof")))
    })
}

fn classify_ssl_error(err: &openssl::ssl::Error, stage: Stage) -> LinkError {
    if let Some(alert) = alert_in(err) {
        if is_cert_alert(alert) {
            return LinkError::ClientCertRejected {
                detail: format!("TLS alert {}", alert_name(err)),
            };
        }
    }
    if let Some(io) = err.io_error() {
        return LinkError::Io {
            stage,
            source: io::Error::new(io.kind(), io.to_string()),
        };
    }
    if is_unexpected_eof(err) || err.code() == openssl::ssl::ErrorCode::ZERO_RETURN {
        return LinkError::Tls {
            stage,
            detail: "the server closed the connection during the handshake".into(),
        };
    }
    LinkError::Tls {
        stage,
        detail: err.to_string(),
    }
}

fn alert_name(err: &openssl::ssl::Error) -> String {
    err.ssl_error()
        .and_then(|s| s.errors().iter().find_map(|e| e.reason()))
        .unwrap_or("(unnamed)")
        .to_owned()
}

/// How an established connection ended, as seen by a read: `Ok(0)` (clean close or EOF) or an
/// error (a TLS alert, a reset, ...).
#[derive(Debug)]
pub enum CloseEvent {
    Eof,
    Error(io::Error),
}

/// Sorts the end of an established connection (see the module documentation): a certificate
/// alert, or a close soon after the handshake with nothing confirmed yet, means the server
/// refused the client certificate.
pub fn classify_close(
    event: CloseEvent,
    soon_after_handshake: bool,
    confirmed_any: bool,
) -> LinkError {
    let suspicious = soon_after_handshake && !confirmed_any;
    let eof_rejection = || LinkError::ClientCertRejected {
        detail: "the server closed the connection right after the TLS handshake without an \
                 alert (rsyslog does this when the client certificate is missing, from an \
                 untrusted CA, or not a permitted peer)"
            .into(),
    };
    match event {
        CloseEvent::Eof if suspicious => eof_rejection(),
        CloseEvent::Eof => LinkError::PeerClosed,
        CloseEvent::Error(e) => {
            let ssl = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>());
            match ssl {
                Some(ssl_err) => {
                    if alert_in(ssl_err).is_some_and(is_cert_alert) {
                        return LinkError::ClientCertRejected {
                            detail: format!("TLS alert {}", alert_name(ssl_err)),
                        };
                    }
                    if is_unexpected_eof(ssl_err) {
                        return if suspicious {
                            eof_rejection()
                        } else {
                            LinkError::PeerClosed
                        };
                    }
                    LinkError::Tls {
                        stage: Stage::Read,
                        detail: ssl_err.to_string(),
                    }
                }
                None if suspicious
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    eof_rejection()
                }
                None if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
                {
                    LinkError::PeerClosed
                }
                None => LinkError::Io {
                    stage: Stage::Read,
                    source: e,
                },
            }
        }
    }
}
