//! One serial port, opened with the configured line settings and used non-blocking from the
//! shim's poll loop. Reads and writes never wait; readiness comes from `poll(2)`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};
use serialport::{SerialPort, TTYPort};
use warden_core::report::report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataBits {
    #[serde(rename = "5")]
    Five,
    #[serde(rename = "6")]
    Six,
    #[serde(rename = "7")]
    Seven,
    #[serde(rename = "8")]
    Eight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopBits {
    #[serde(rename = "1")]
    One,
    #[serde(rename = "2")]
    Two,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    None,
    /// XON/XOFF in the data stream.
    Software,
    /// RTS/CTS lines.
    Hardware,
}

/// Line settings of one endpoint (8N1 at 115200 unless configured otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSettings {
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

impl Default for LineSettings {
    fn default() -> Self {
        Self {
            baud: 115_200,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot open serial port {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("serial port {path}")]
    Io { path: PathBuf, source: io::Error },
}

/// An open serial port in non-blocking mode: a plain descriptor for the data path (one
/// syscall per read or write) and a second, configuring handle for line settings and the
/// modem-status lines.
pub struct Port {
    data: File,
    tty: TTYPort,
    path: PathBuf,
}

impl Port {
    /// Opens `path` exclusively (TIOCEXCL + flock) in raw mode with `settings`.
    pub fn open(path: &Path, settings: &LineSettings) -> Result<Self, PortError> {
        let open_error = |reason: String| PortError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let path_text = path
            .to_str()
            .ok_or_else(|| open_error("path is not UTF-8".into()))?;
        let data = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
            .open(path)
            .map_err(|e| open_error(report(&e)))?;
        // A second, configuring handle: line settings apply to the line, so `data` gets them.
        let tty = serialport::new(path_text, settings.baud)
            .exclusive(false)
            .data_bits(match settings.data_bits {
                DataBits::Five => serialport::DataBits::Five,
                DataBits::Six => serialport::DataBits::Six,
                DataBits::Seven => serialport::DataBits::Seven,
                DataBits::Eight => serialport::DataBits::Eight,
            })
            .parity(match settings.parity {
                Parity::None => serialport::Parity::None,
                Parity::Odd => serialport::Parity::Odd,
                Parity::Even => serialport::Parity::Even,
            })
            .stop_bits(match settings.stop_bits {
                StopBits::One => serialport::StopBits::One,
                StopBits::Two => serialport::StopBits::Two,
            })
            .flow_control(match settings.flow_control {
                FlowControl::None => serialport::FlowControl::None,
                FlowControl::Software => serialport::FlowControl::Software,
                FlowControl::Hardware => serialport::FlowControl::Hardware,
            })
            .timeout(Duration::ZERO)
            .open_native()
            .map_err(|e| open_error(report(&e)))?;
        rustix::termios::ioctl_tiocexcl(&data)
            .map_err(|e| open_error(format!("cannot make it exclusive: {e}")))?;
        Ok(Self {
            data,
            tty,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, errno: Errno) -> PortError {
        PortError::Io {
            path: self.path.clone(),
            source: io::Error::from(errno),
        }
    }

    /// Reads what is available: `Ok(Some(n))` bytes, `Ok(None)` when nothing is ready, and
    /// `Err` for a hang-up (EIO on a PTY whose other side closed) or another error.
    pub fn read_available(&self, buf: &mut [u8]) -> Result<Option<usize>, PortError> {
        match (&self.data).read(buf) {
            Ok(0) => Err(self.io_error(Errno::EIO)),
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(PortError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Writes as much of `data` as the port accepts now; returns how much.
    pub fn write_available(&mut self, data: &[u8]) -> Result<usize, PortError> {
        match (&self.data).write(data) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(source) => Err(PortError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The DCD (carrier detect) line, where the port has modem-status lines; `None` where it
    /// has none (PTYs, three-wire adapters).
    pub fn carrier_detect(&mut self) -> Option<bool> {
        self.tty.read_carrier_detect().ok()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.data.as_raw_fd()
    }
}
