//! Virtual serial pairs: a PTY whose slave side the shim opens as if it were a serial port and
//! whose master side plays the technician's laptop or the device. Real kernel TTYs, not mocks.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::pty::openpty;
use nix::sys::termios::{self, SetArg};

/// One PTY: `path` is what the shim opens; `endpoint` is the other end.
pub struct VirtualSerialPair {
    pub path: PathBuf,
    pub endpoint: File,
    /// Kept open so the slave side stays alive while the shim reopens it.
    _slave: OwnedFd,
}

impl VirtualSerialPair {
    pub fn new() -> io::Result<Self> {
        let pty = openpty(None, None).map_err(io::Error::from)?;
        // Raw mode on the master's view too: bytes pass unchanged in both directions.
        let mut attrs = termios::tcgetattr(pty.slave.as_fd()).map_err(io::Error::from)?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &attrs).map_err(io::Error::from)?;
        let path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(io::Error::from)?;
        Ok(Self {
            path,
            endpoint: File::from(pty.master),
            _slave: pty.slave,
        })
    }
}
