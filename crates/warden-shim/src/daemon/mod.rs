//! The shim daemon: the single-threaded forwarding loop around the state machine, and the
//! threads that feed it (recorder, tamper sources, control socket).

pub mod control;
pub mod recorder;
pub mod run;
pub mod tamper;

pub use run::{
    Daemon, DaemonError, DaemonPaths, HostError, ResetDecision, ShimEvent, ShimHost, ShutdownHandle,
};
