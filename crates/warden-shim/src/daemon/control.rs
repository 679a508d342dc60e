//! The local control socket: `warden shim reset` and `warden shim status` talk to the daemon
//! here. A Unix socket (0600, in a 0700 directory) — the daemon opens no network listener.
//! Only the daemon's own user (or root) may connect (checked with SO_PEERCRED). A reset names a
//! request that an administrator's sign-in stored in the database; the daemon checks it there,
//! so a connection alone cannot reset anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde::{Deserialize, Serialize};
use warden_core::report::report;

/// A request line from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ControlRequest {
    Status,
    /// Return from LOCKED or EMERGENCY_STOP to IDLE, as reset request `request` (stored by an
    /// administrator's `warden shim reset`) asks.
    Reset {
        request: u64,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControlReply {
    pub ok: bool,
    pub state: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {reason}")]
    Setup { path: PathBuf, reason: String },
    #[error("cannot reach the shim daemon at {path}: {reason} (is `warden shim run` running?)")]
    Connect { path: PathBuf, reason: String },
    #[error("the shim daemon answered something unreadable: {0}")]
    Protocol(String),
}

/// One request waiting for the daemon's answer.
pub struct Pending {
    pub request: ControlRequest,
    pub reply: Sender<ControlReply>,
}

// Implements: S42, S50
/// Binds the socket (replacing a stale one) and serves it on a thread; each request is handed
/// to `deliver` and answered with what comes back.
pub fn serve(
    path: &Path,
    deliver: impl Fn(Pending) + Send + 'static,
) -> Result<JoinHandle<()>, ControlError> {
    let setup = |reason: String| ControlError::Setup {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent() {
        warden_core::fsx::create_private_dir(dir).map_err(|e| setup(report(&e)))?;
    }
    if path.symlink_metadata().is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(setup("another daemon is listening on it".into()));
        }
        std::fs::remove_file(path)
            .map_err(|e| setup(format!("cannot remove the stale socket: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| setup(report(&e)))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| setup(report(&e)))?;
    let me = nix::unistd::geteuid().as_raw();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let allowed = getsockopt(&stream, PeerCredentials)
                    .map(|c| c.uid() == me || c.uid() == 0)
                    .unwrap_or(false);
                handle(stream, allowed, &deliver);
            }
        })
        .map_err(|e| setup(report(&e)))
}

fn handle(stream: UnixStream, allowed: bool, deliver: &impl Fn(Pending)) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let answer = |writer: &mut UnixStream, reply: ControlReply| {
        let mut line = serde_json::to_string(&reply).unwrap_or_default();
        line.push('\n');
        let _ = writer.write_all(line.as_bytes());
    };
    if !allowed {
        answer(
            &mut writer,
            ControlReply {
                ok: false,
                state: String::new(),
                message: "permission denied".into(),
            },
        );
        return;
    }
    let mut line = String::new();
    if BufReader::new(stream.take(4096))
        .read_line(&mut line)
        .is_err()
    {
        return;
    }
    let request = match serde_json::from_str::<ControlRequest>(line.trim()) {
        Ok(request) => request,
        Err(e) => {
            answer(
                &mut writer,
                ControlReply {
                    ok: false,
                    state: String::new(),
                    message: format!("bad request: {e}"),
                },
            );
            return;
        }
    };
    let (tx, rx) = mpsc::channel();
    deliver(Pending { request, reply: tx });
    let reply = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or(ControlReply {
            ok: false,
            state: String::new(),
            message: "the daemon did not answer".into(),
        });
    answer(&mut writer, reply);
}

/// The client side: sends one request and waits for the answer.
pub fn request(path: &Path, request: &ControlRequest) -> Result<ControlReply, ControlError> {
    let connect = |reason: String| ControlError::Connect {
        path: path.to_path_buf(),
        reason,
    };
    let mut stream = UnixStream::connect(path).map_err(|e| connect(report(&e)))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| connect(report(&e)))?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ControlError::Protocol(report(&e)))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| connect(report(&e)))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| connect(report(&e)))?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::Protocol(report(&e)))
}
