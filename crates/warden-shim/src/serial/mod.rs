//! Serial endpoints: line settings, opening a port for the shim's poll loop, and virtual
//! serial pairs (PTYs) for tests, the demo and benchmarks.

pub mod port;
pub mod pty;

pub use port::{DataBits, FlowControl, LineSettings, Parity, Port, PortError, StopBits};
pub use pty::VirtualSerialPair;
