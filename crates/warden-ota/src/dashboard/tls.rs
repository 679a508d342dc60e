//! HTTPS for the dashboard: an OpenSSL acceptor from a PEM certificate chain and key (the key
//! file must be private: 0600, ours, not a symlink), and a listener that hands axum only
//! connections whose handshake finished. Handshakes run in their own tasks, bounded in number
//! and time, so a slow or silent client cannot stall the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod, SslVersion};
use openssl::x509::X509;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_openssl::SslStream;

use crate::config::DashboardTls;

/// Why the dashboard's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DashboardTlsError {
    #[error("cannot read the dashboard certificate {path}")]
    ReadCert {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot use the dashboard key {path}")]
    ReadKey {
        path: String,
        source: warden_core::fsx::FsError,
    },
    #[error("the dashboard certificate or key is not usable PEM")]
    Pem(#[source] openssl::error::ErrorStack),
    #[error("the dashboard key does not match its certificate")]
    KeyMismatch(#[source] openssl::error::ErrorStack),
}

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once.
const MAX_HANDSHAKES: usize = 64;

/// TLS 1.2 and 1.3 with OpenSSL's intermediate profile, from `tls`'s files.
pub fn acceptor(tls: &DashboardTls) -> Result<Arc<SslAcceptor>, DashboardTlsError> {
    let cert_pem = std::fs::read(&tls.cert).map_err(|source| DashboardTlsError::ReadCert {
        path: tls.cert.display().to_string(),
        source,
    })?;
    let key_pem =
        zeroize::Zeroizing::new(warden_core::fsx::read_private(&tls.key, 1 << 20).map_err(
            |source| DashboardTlsError::ReadKey {
                path: tls.key.display().to_string(),
                source,
            },
        )?);
    let chain = X509::stack_from_pem(&cert_pem).map_err(DashboardTlsError::Pem)?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(DashboardTlsError::Pem)?;
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(DashboardTlsError::Pem)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(DashboardTlsError::Pem)?;
    let mut certs = chain.into_iter();
    let leaf = certs
        .next()
        .ok_or_else(|| DashboardTlsError::Pem(openssl::error::ErrorStack::get()))?;
    b.set_certificate(&leaf).map_err(DashboardTlsError::Pem)?;
    for extra in certs {
        b.add_extra_chain_cert(extra)
            .map_err(DashboardTlsError::Pem)?;
    }
    b.set_private_key(&key).map_err(DashboardTlsError::Pem)?;
    b.check_private_key()
        .map_err(DashboardTlsError::KeyMismatch)?;
    Ok(Arc::new(b.build()))
}

/// A listener of finished TLS handshakes, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: Arc<SslAcceptor>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
        let limit = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "dashboard accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut stream) = SslStream::new(ssl, tcp) else {
                        return;
                    };
                    let done = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        std::pin::Pin::new(&mut stream).accept(),
                    )
                    .await;
                    match done {
                        Ok(Ok(())) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "dashboard TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "dashboard TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            rx,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task ended (only when aborted): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
