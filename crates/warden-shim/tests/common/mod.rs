//! Helpers shared by the integration tests that run external programs.

use std::io::ErrorKind;
use std::process::Command;

/// True if `program --version` runs. If not: under `CI=true` the test fails (CI must exercise
/// it); otherwise a SKIP line goes to stderr and the caller returns early.
pub fn tool_available(program: &str, install_hint: &str) -> bool {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => true,
        result => {
            let why = match result {
                Err(e) if e.kind() == ErrorKind::NotFound => format!("{program} is not installed"),
                Err(e) => format!("{program} cannot be started: {e}"),
                Ok(out) => format!("`{program} --version` failed: {}", out.status),
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}; CI=true requires it ({install_hint})");
            }
            eprintln!("SKIP: {why}");
            false
        }
    }
}
