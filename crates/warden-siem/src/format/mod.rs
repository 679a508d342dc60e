//! Pure formatting of SIEM messages: CEF payload, RFC 5424 envelope, RFC 5425 framing, and the
//! message kinds with their priorities. Nothing here performs I/O or reads a clock.

pub mod cef;
pub mod framing;
pub mod kind;
pub mod rfc5424;

pub use cef::{CefDevice, CefError, CefEvent, CefSeverity, ExtKey};
pub use framing::{encode_frame, FrameDecoder, FrameError};
pub use kind::MessageKind;
pub use rfc5424::{
    AppName, Facility, Hostname, MsgId, Priority, ProcId, SdElement, SdId, SdParamName, Severity,
    SyslogError, SyslogMessage, Timestamp,
};
