//! The shape that keeps the gate honest, checked on the source: the binary's command modules do
//! not reach into each other (each calls library operations), and a transaction that carries
//! audit events is begun and committed in exactly one place (`AuditedTx`).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Library sources (no tests, benches or examples).
fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(repo().join("crates")).unwrap() {
        rust_files(&krate.unwrap().path().join("src"), &mut files);
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn no_command_module_uses_another_command_module() {
    let mut files = Vec::new();
    rust_files(&repo().join("crates/warden/src/cmd"), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("crate::cmd::"),
            "{} uses another command's module: shared code belongs in a library crate \
             (or, for terminal input and rendering, beside `context`)",
            path.display()
        );
    }
}

#[test]
fn audited_transactions_are_begun_and_committed_in_one_place() {
    let home = repo().join("crates/warden-store/src/audit/mod.rs");
    for (path, text) in sources() {
        if path == home {
            continue;
        }
        for needle in [
            "transaction_with_behavior(",
            "Transaction::new_unchecked(",
            "wal_checkpoint(TRUNCATE)",
            ".append_in(",
        ] {
            assert!(
                !text.contains(needle),
                "{} has `{needle}`: begin and commit audited changes through AuditLog::begin / \
                 transact (Store::transact)",
                path.display()
            );
        }
    }
    let home_text = std::fs::read_to_string(&home).unwrap();
    assert_eq!(home_text.matches("wal_checkpoint(TRUNCATE)").count(), 1);
}
