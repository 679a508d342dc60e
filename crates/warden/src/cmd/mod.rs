//! One module per top-level subcommand. A command module parses nothing (clap did), signs the
//! person in through [`crate::context::Context`], calls one library operation and renders its
//! result; no command module uses another's.

pub mod audit;
pub mod config;
pub mod demo;
pub mod init;
pub mod keys;
pub mod ota;
pub mod records;
pub mod session;
pub mod shim;
pub mod siem;
pub mod user;
pub mod vault;

/// Text safe to print: control and invisible formatting characters (which could disguise it or
/// act on the terminal) are escaped. For anything a person typed that another reads (labels,
/// file names).
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let disguising = matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || disguising {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
