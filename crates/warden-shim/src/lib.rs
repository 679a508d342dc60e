//! The serial MFA shim (see the shim issue).
