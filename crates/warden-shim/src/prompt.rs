//! The challenge prompt's line editor: bytes typed by the technician in, echo and entered
//! fields out. Pure: no I/O, no clock.
//!
//! It asks for the technician id (echoed) and then the TOTP code (never echoed). Backspace and
//! DEL erase, Ctrl-U clears the line, Ctrl-C / Ctrl-D cancel, CR or LF ends a field (a CR LF
//! pair counts once). Fields are length-capped; bytes that are neither printable ASCII nor an
//! editing key are refused with a bell and never stored. Nothing typed here reaches the device.

use zeroize::Zeroizing;

/// What the technician sees.
pub const ID_PROMPT: &[u8] = b"\r\nwarden: technician id: ";
pub const CODE_PROMPT: &[u8] = b"\r\nwarden: one-time code: ";
const BELL: u8 = 0x07;
const ERASE: &[u8] = b"\x08 \x08";

/// Caps on what can be typed at each prompt.
#[derive(Debug, Clone, Copy)]
pub struct PromptLimits {
    pub max_id_len: usize,
    pub max_code_len: usize,
}

impl Default for PromptLimits {
    fn default() -> Self {
        Self {
            max_id_len: 64,
            max_code_len: 10,
        }
    }
}

/// A finished challenge answer. The code is secret: no `Debug`, zeroized on drop.
pub struct Answer {
    pub technician_id: String,
    pub code: Zeroizing<String>,
}

/// What a batch of typed bytes produced.
#[derive(Default)]
pub struct PromptOutput {
    /// Bytes to send back to the technician (echo, erase sequences, bells, the next prompt).
    pub echo: Vec<u8>,
    /// Set when both fields have been entered.
    pub answer: Option<Answer>,
    /// Set when the technician cancelled (Ctrl-C / Ctrl-D).
    pub cancelled: bool,
    /// Bytes refused (non-printable or over the length cap), for the audit trail.
    pub refused: usize,
}

enum Field {
    Id,
    Code { id: String },
}

// Implements: S25
/// The line editor for one challenge.
pub struct Prompt {
    field: Field,
    line: Zeroizing<Vec<u8>>,
    limits: PromptLimits,
    /// The previous byte was CR: a following LF belongs to the same line end.
    after_cr: bool,
}

impl Prompt {
    /// Starts a challenge; the returned bytes are the first prompt.
    pub fn start(limits: PromptLimits) -> (Self, Vec<u8>) {
        let prompt = Self {
            field: Field::Id,
            line: Zeroizing::new(Vec::new()),
            limits,
            after_cr: false,
        };
        (prompt, ID_PROMPT.to_vec())
    }

    fn secret_field(&self) -> bool {
        matches!(self.field, Field::Code { .. })
    }

    fn cap(&self) -> usize {
        match self.field {
            Field::Id => self.limits.max_id_len,
            Field::Code { .. } => self.limits.max_code_len,
        }
    }

    /// Feeds typed bytes. Stops consuming at the end of the answer or a cancel; the rest of the
    /// input is discarded (it was typed before the gate opened and must not reach the device).
    pub fn feed(&mut self, bytes: &[u8]) -> PromptOutput {
        let mut out = PromptOutput::default();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    if let Some(answer) = self.end_field(&mut out.echo) {
                        out.answer = Some(answer);
                        return out;
                    }
                }
                0x08 | 0x7f => {
                    if self.line.pop().is_some() && !self.secret_field() {
                        out.echo.extend_from_slice(ERASE);
                    }
                }
                0x15 => {
                    // Ctrl-U: clear the line.
                    if !self.secret_field() {
                        for _ in 0..self.line.len() {
                            out.echo.extend_from_slice(ERASE);
                        }
                    }
                    self.line.clear();
                }
                0x03 | 0x04 => {
                    out.cancelled = true;
                    out.echo.extend_from_slice(b"^C\r\n");
                    return out;
                }
                0x20..=0x7e if self.line.len() < self.cap() => {
                    self.line.push(byte);
                    if !self.secret_field() {
                        out.echo.push(byte);
                    }
                }
                _ => {
                    out.refused += 1;
                    out.echo.push(BELL);
                }
            }
        }
        out
    }

    /// Ends the current field; returns the answer after the code.
    fn end_field(&mut self, echo: &mut Vec<u8>) -> Option<Answer> {
        let text = String::from_utf8(std::mem::take(&mut *self.line))
            .expect("only printable ASCII is stored");
        match std::mem::replace(&mut self.field, Field::Id) {
            Field::Id if text.trim().is_empty() => {
                echo.extend_from_slice(ID_PROMPT);
                None
            }
            Field::Id => {
                self.field = Field::Code {
                    id: text.trim().to_string(),
                };
                echo.extend_from_slice(CODE_PROMPT);
                None
            }
            Field::Code { id } => {
                echo.extend_from_slice(b"\r\n");
                Some(Answer {
                    technician_id: id,
                    code: Zeroizing::new(text),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Option<Answer>, bool, usize) {
        let (mut prompt, mut echo) = Prompt::start(PromptLimits::default());
        let out = prompt.feed(input);
        echo.extend_from_slice(&out.echo);
        (echo, out.answer, out.cancelled, out.refused)
    }

    /// Verifies: S25
    #[test]
    fn id_is_echoed_code_is_not() {
        let (echo, answer, _, _) = run(b"tech-001\r123456\r");
        let answer = answer.unwrap();
        assert_eq!(answer.technician_id, "tech-001");
        assert_eq!(answer.code.as_str(), "123456");
        let echo = String::from_utf8(echo).unwrap();
        assert!(echo.contains("tech-001"));
        assert!(
            !echo.contains("123456"),
            "the code must never be echoed: {echo:?}"
        );
    }

    #[test]
    fn crlf_counts_as_one_line_end() {
        let (_, answer, _, _) = run(b"tech-001\r\n123456\r\n");
        assert_eq!(answer.unwrap().code.as_str(), "123456");
    }

    #[test]
    fn backspace_and_kill_line_edit_both_fields() {
        let (echo, answer, _, _) = run(b"texh\x7f\x08ch-1\r9999\x15123\x08456\r");
        let answer = answer.unwrap();
        assert_eq!(answer.technician_id, "tech-1");
        assert_eq!(answer.code.as_str(), "12456");
        assert!(echo.windows(3).any(|w| w == ERASE));
    }

    #[test]
    fn control_bytes_and_overlong_input_are_refused() {
        let (echo, answer, _, refused) = run(b"a\x1b[Ab\x00\xff\r");
        assert!(answer.is_none());
        // ESC, NUL and 0xff refused; '[' and 'A' are printable and kept.
        assert_eq!(refused, 3);
        assert!(echo.contains(&BELL));
        let (mut prompt, _) = Prompt::start(PromptLimits {
            max_id_len: 4,
            max_code_len: 6,
        });
        let out = prompt.feed(b"abcdefg\r1234567\r");
        let answer = out.answer.unwrap();
        assert_eq!(answer.technician_id, "abcd");
        assert_eq!(answer.code.as_str(), "123456");
        assert_eq!(out.refused, 4);
    }

    #[test]
    fn cancel_stops_and_discards_the_rest() {
        let (_, answer, cancelled, _) = run(b"tech\x03123456\r");
        assert!(cancelled);
        assert!(answer.is_none());
    }

    #[test]
    fn empty_id_reprompts() {
        let (echo, answer, _, _) = run(b"\r\r");
        assert!(answer.is_none());
        assert_eq!(
            echo.windows(ID_PROMPT.len())
                .filter(|w| *w == ID_PROMPT)
                .count(),
            3
        );
    }

    #[test]
    fn bytes_after_the_answer_are_not_consumed() {
        let (mut prompt, _) = Prompt::start(PromptLimits::default());
        let out = prompt.feed(b"t\r1\rrm -rf /\r");
        assert!(out.answer.is_some());
        assert!(!out.echo.windows(5).any(|w| w == b"rm -r"));
    }
}
