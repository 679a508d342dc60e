//! Progress bars for long operations, shown only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish too fast for a bar to help.
const MIN_BYTES_FOR_BAR: u64 = 16 * 1024 * 1024;

/// A byte progress bar on standard error when it is a terminal and the job is large; else none.
pub fn bytes(total: Option<u64>, verb: &str) -> Option<ProgressBar> {
    let total = total?;
    if total < MIN_BYTES_FOR_BAR || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(&format!(
        "{verb} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
    ))
    .expect("static template is valid");
    bar.set_style(style);
    Some(bar)
}
