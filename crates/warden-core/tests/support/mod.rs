//! Shared helpers for interoperability tests that run external tools (Python packages such as
//! pyotp and argon2-cffi, the `oathtool` command).
//!
//! A missing tool skips the test with a `SKIP` line on stderr on a developer's machine, and
//! fails it with a clear message under CI (`CI=true`), where a silent skip would hide a gap.
//! Python is `$WARDEN_TEST_PYTHON`, or `python3` on the PATH. Secrets and passwords go to the
//! tools on standard input, not on the command line, except where a tool only takes them as
//! an argument (oathtool); these are throwaway test values.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// True when running under CI, where missing tools are a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// Reports a missing tool: panics under CI, otherwise prints a SKIP line and returns `None`.
pub fn missing<T>(test: &str, what: &str, how_to_install: &str) -> Option<T> {
    if under_ci() {
        panic!(
            "{test}: {what} is required under CI (CI=true) but is not available. {how_to_install}"
        );
    }
    // Written to the real stderr, not through `eprintln!`, which the test harness captures and
    // shows only for failing tests: a skip must be visible in a passing run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: {what} is not available. {how_to_install}"
    );
    None
}

/// The Python interpreter to use: `$WARDEN_TEST_PYTHON` or `python3`.
pub fn python_program() -> String {
    std::env::var("WARDEN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// A Python interpreter that can import every module in `modules`, or `None` (skip) / panic
/// (CI) when there is none.
pub fn python_with(test: &str, modules: &[&str]) -> Option<String> {
    let python = python_program();
    let imports = modules
        .iter()
        .map(|module| format!("import {module}"))
        .collect::<Vec<_>>()
        .join("; ");
    let hint = "Install them (e.g. `python3 -m venv .venv && .venv/bin/pip install pyotp \
                argon2-cffi`) and set WARDEN_TEST_PYTHON to that interpreter.";
    match Command::new(&python)
        .args(["-c", &imports])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Some(python),
        Ok(_) => missing(
            test,
            &format!("Python modules {modules:?} (for {python})"),
            hint,
        ),
        Err(_) => missing(test, &format!("the Python interpreter {python:?}"), hint),
    }
}

/// `program` if it runs with `probe_args` (e.g. `--version`), or `None` (skip) / panic (CI).
pub fn command(
    test: &str,
    program: &str,
    probe_args: &[&str],
    how_to_install: &str,
) -> Option<String> {
    match Command::new(program)
        .args(probe_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Some(program.to_owned()),
        _ => missing(test, &format!("the `{program}` command"), how_to_install),
    }
}

/// Runs a Python script with `input` on standard input and returns its standard output.
/// Panics with the script's stderr when it fails.
pub fn run_python(python: &str, script: &str, input: &str) -> String {
    run(python, &["-c", script], input)
}

/// Runs `program` with `args` and `input` on standard input; returns standard output.
/// Panics with the exit status and stderr when it fails.
pub fn run(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .unwrap_or_else(|err| panic!("cannot write to {program}: {err}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("{program} did not finish: {err}"));
    assert!(
        output.status.success(),
        "{program} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}
