//! An error as one line of text with its causes, for audit details and logs.
//!
//! warden's error types follow one rule: each level's message says only what that level adds
//! (which file, which key, which step), and the cause is returned by `source()`, never also
//! printed. Anything that shows an error therefore walks the chain: the binary with anyhow's
//! `{:#}`, libraries with [`Report`]. Printing an error with plain `{}` shows its top level
//! only.

use std::error::Error;
use std::fmt;

/// Displays an error and its causes, joined by `: ` (what anyhow's `{:#}` prints).
#[derive(Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            let text = err.to_string();
            // A cause that only repeats its parent with a prefix (SQLite's "Error code 11:
            // database disk image is malformed" under rusqlite's "database disk image is
            // malformed") adds nothing.
            if shown.is_empty() || !text.ends_with(&shown) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = err.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `err` and its causes as one string.
pub fn report(err: &(dyn Error + 'static)) -> String {
    Report(err).to_string()
}

/// True when some level of `err` repeats the message of its cause (the mistake [`Report`]'s
/// rule avoids); for tests.
pub fn repeats_a_cause(err: &(dyn Error + 'static)) -> bool {
    let mut level: &(dyn Error + 'static) = err;
    while let Some(cause) = level.source() {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && level.to_string().contains(&cause_text) {
            return true;
        }
        level = cause;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}")]
    struct Outer {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn the_chain_is_printed_once() {
        let err = Outer {
            path: "x".into(),
            source: std::io::Error::other("gone"),
        };
        assert_eq!(report(&err), "cannot read x: gone");
        assert!(!repeats_a_cause(&err));
    }

    /// SQLite's code under rusqlite's message: the message once.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Message(String, #[source] Coded);

    #[derive(Debug, thiserror::Error)]
    #[error("Error code 11: {0}")]
    struct Coded(String);

    #[test]
    fn a_cause_that_only_prefixes_its_parent_is_not_printed() {
        let malformed = "database disk image is malformed".to_string();
        let err = Outer {
            path: "x".into(),
            source: std::io::Error::other(Message(malformed.clone(), Coded(malformed))),
        };
        assert_eq!(
            report(&err),
            "cannot read x: database disk image is malformed"
        );
    }
}
