//! The traceability matrix's generator (`scripts/traceability.py`): its own tests pass, and every
//! `/// Verifies:` / `// Implements:` tag and every note in the repository is valid (known ids,
//! tests where tests are named, documentation anchors where they are said to be). The matrix
//! itself is compared with the test run by `.ci/run`, after this suite.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn script(arg: &str) -> std::process::Output {
    Command::new("python3")
        .arg(repo().join("scripts/traceability.py"))
        .arg(arg)
        .output()
        .expect("python3 runs scripts/traceability.py (CI installs Python 3)")
}

/// Verifies: V56
#[test]
fn the_generator_passes_its_own_tests_and_every_tag_is_valid() {
    let out = script("--self-test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = script("--tags");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tags ok:"));
}
