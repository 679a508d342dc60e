//! Progress bars for long operations, shown only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish too fast for a bar to help.
const MIN_BYTES_FOR_BAR: u64 = 16 * 1024 * 1024;

/// A byte progress bar on standard error, made on the first report when the total is known,
/// large, and standard error is a terminal.
pub struct Bar {
    verb: &'static str,
    bar: Option<ProgressBar>,
    decided: bool,
}

impl Bar {
    pub fn new(verb: &'static str) -> Self {
        Self {
            verb,
            bar: None,
            decided: false,
        }
    }

    pub fn set(&mut self, done: u64, total: Option<u64>) {
        if !self.decided {
            self.decided = true;
            self.bar = total
                .filter(|t| *t >= MIN_BYTES_FOR_BAR && std::io::stderr().is_terminal())
                .map(|total| {
                    let bar = ProgressBar::new(total);
                    let style = ProgressStyle::with_template(&format!(
                        "{} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}",
                        self.verb
                    ))
                    .expect("static template is valid");
                    bar.set_style(style);
                    bar
                });
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn clear(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
