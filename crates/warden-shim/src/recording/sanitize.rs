//! What `warden session play` lets through to the operator's terminal. Pure: bytes in, bytes out.
//!
//! A recording holds whatever the device sent, and a device (or someone who controls it) can send
//! escape sequences that act on the terminal that replays them: set the window title, write the
//! clipboard (OSC 52), ask the terminal to report its title or state back as if typed (an input
//! injection), switch character sets so the rest of the screen is garbage, or reprogram keys.
//! [`TerminalSanitizer`] keeps what a serial console needs to look right and drops the rest:
//!
//! - kept: printable text (UTF-8), CR, LF, BS, TAB; CSI sequences for colours and attributes
//!   (SGR), cursor movement, erasing, inserting and deleting, scroll regions; cursor visibility,
//!   autowrap and the alternate screen; `ESC 7`/`ESC 8` (save/restore cursor), `ESC D`/`E`/`M`.
//! - dropped: OSC (titles, clipboard, colours, hyperlinks), DCS, SOS, PM and APC strings whole;
//!   every other CSI (device and window reports, window operations, mouse and key modes, printer
//!   control) and ESC sequence (character sets, keypad modes, resets, identification requests);
//!   CSI sequences with absurd parameters; other C0 controls (BEL, ENQ, SO/SI, …) and DEL;
//!   C1 controls (U+0080–U+009F) in any encoding. Bytes that are not UTF-8 become U+FFFD.
//!
//! The sanitizer keeps state between calls, so a sequence split across two recorded chunks is
//! recognised whole. [`TerminalSanitizer::finish`] undoes what the replay changed (attributes,
//! hidden cursor, alternate screen, scroll region, insert mode, autowrap).

/// Longest CSI parameter string accepted; longer sequences are dropped.
const MAX_CSI_PARAMS: usize = 64;
/// Largest numeric CSI parameter accepted (no terminal needs more; huge counts are a DoS).
const MAX_CSI_NUMBER: u32 = 9999;

const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const DEL: u8 = 0x7f;
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// DEC private modes (`CSI ? n h/l`) that are let through.
const PRIVATE_MODES: [u32; 6] = [
    6,    // origin mode
    7,    // autowrap
    25,   // cursor visible
    47,   // alternate screen (old)
    1047, // alternate screen
    1049, // alternate screen with saved cursor
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and one or more intermediate bytes (0x20–0x2F): always dropped.
    EscapeIntermediate,
    /// After `ESC [`: collecting parameter and intermediate bytes.
    Csi,
    /// Inside an OSC, DCS, SOS, PM or APC string: everything up to its terminator is dropped.
    /// OSC strings also end at BEL.
    String {
        osc: bool,
    },
}

/// Terminal state the replay changed, undone by [`TerminalSanitizer::finish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Touched {
    attributes: bool,
    cursor_hidden: bool,
    alternate_screen: bool,
    scroll_region: bool,
    insert_mode: bool,
    autowrap_off: bool,
    origin_mode: bool,
}

/// Filters a byte stream for a terminal (see the module documentation).
#[derive(Debug, Clone)]
pub struct TerminalSanitizer {
    state: State,
    /// CSI parameter and intermediate bytes so far.
    csi: Vec<u8>,
    /// A UTF-8 sequence being collected, and how many bytes it needs in all.
    utf8: Vec<u8>,
    utf8_len: usize,
    touched: Touched,
}

impl Default for TerminalSanitizer {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalSanitizer {
    pub fn new() -> Self {
        Self {
            state: State::Ground,
            csi: Vec::with_capacity(MAX_CSI_PARAMS),
            utf8: Vec::with_capacity(4),
            utf8_len: 0,
            touched: Touched::default(),
        }
    }

    /// Appends to `out` what of `input` may reach the terminal.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            self.byte(byte, out);
        }
    }

    /// Ends the stream: drops an unfinished sequence, replaces an unfinished character, and
    /// appends what puts the terminal back the way it was.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush_utf8(out);
        self.state = State::Ground;
        self.csi.clear();
        let t = std::mem::take(&mut self.touched);
        if t.alternate_screen {
            out.extend_from_slice(b"\x1b[?1049l");
        }
        if t.scroll_region {
            out.extend_from_slice(b"\x1b[r");
        }
        if t.origin_mode {
            out.extend_from_slice(b"\x1b[?6l");
        }
        if t.insert_mode {
            out.extend_from_slice(b"\x1b[4l");
        }
        if t.autowrap_off {
            out.extend_from_slice(b"\x1b[?7h");
        }
        if t.cursor_hidden {
            out.extend_from_slice(b"\x1b[?25h");
        }
        if t.attributes {
            out.extend_from_slice(b"\x1b[0m");
        }
    }

    fn byte(&mut self, byte: u8, out: &mut Vec<u8>) {
        // CAN and SUB cancel any sequence (ECMA-48); ESC starts a new one, even inside another.
        match (self.state, byte) {
            (_, CAN | SUB) => {
                self.flush_utf8(out);
                self.state = State::Ground;
                return;
            }
            (State::String { osc: true }, 0x07) => {
                self.state = State::Ground;
                return;
            }
            (_, ESC) => {
                self.flush_utf8(out);
                self.state = State::Escape;
                return;
            }
            _ => {}
        }
        match self.state {
            State::Ground => self.ground(byte, out),
            State::Escape => self.escape(byte, out),
            State::EscapeIntermediate => match byte {
                0x20..=0x2f | DEL => {}
                0x30..=0x7e => self.state = State::Ground,
                _ => self.abort(byte, out),
            },
            State::Csi => self.csi_byte(byte, out),
            State::String { .. } => {}
        }
    }

    /// A sequence broken off by a byte that cannot continue it: the sequence is dropped and
    /// the byte is read as ordinary input.
    fn abort(&mut self, byte: u8, out: &mut Vec<u8>) {
        self.state = State::Ground;
        self.csi.clear();
        self.ground(byte, out);
    }

    fn escape(&mut self, byte: u8, out: &mut Vec<u8>) {
        match byte {
            b'[' => {
                self.csi.clear();
                self.state = State::Csi;
            }
            b']' => self.state = State::String { osc: true },
            b'P' | b'X' | b'^' | b'_' => self.state = State::String { osc: false },
            0x20..=0x2f => self.state = State::EscapeIntermediate,
            // Save/restore cursor, index, next line, reverse index.
            b'7' | b'8' | b'D' | b'E' | b'M' => {
                out.extend_from_slice(&[ESC, byte]);
                self.state = State::Ground;
            }
            0x30..=0x7e => self.state = State::Ground,
            DEL => {}
            _ => self.abort(byte, out),
        }
    }

    fn csi_byte(&mut self, byte: u8, out: &mut Vec<u8>) {
        match byte {
            0x20..=0x3f => {
                // Past the limit the sequence is dropped at its final byte; keep one byte more
                // than allowed to know.
                if self.csi.len() <= MAX_CSI_PARAMS {
                    self.csi.push(byte);
                }
            }
            0x40..=0x7e => {
                self.state = State::Ground;
                if self.csi.len() <= MAX_CSI_PARAMS && self.allow_csi(byte) {
                    out.extend_from_slice(b"\x1b[");
                    out.extend_from_slice(&self.csi);
                    out.push(byte);
                }
                self.csi.clear();
            }
            DEL => {}
            _ => self.abort(byte, out),
        }
    }

    /// Decides on a complete CSI sequence (parameters in `self.csi`, final byte `last`), and
    /// notes what it changes.
    fn allow_csi(&mut self, last: u8) -> bool {
        let (private, params) = match self.csi.first() {
            Some(b'?') => (true, &self.csi[1..]),
            _ => (false, &self.csi[..]),
        };
        // Digits and separators only: no intermediates, no other private markers.
        if !params
            .iter()
            .all(|b| b.is_ascii_digit() || *b == b';' || *b == b':')
        {
            return false;
        }
        let mut numbers = Vec::new();
        for field in params.split(|b| *b == b';' || *b == b':') {
            if field.len() > 4 {
                return false;
            }
            let n = field.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            if n > MAX_CSI_NUMBER {
                return false;
            }
            numbers.push(n);
        }
        if private {
            if !matches!(last, b'h' | b'l') || params.is_empty() {
                return false;
            }
            if !numbers.iter().all(|n| PRIVATE_MODES.contains(n)) {
                return false;
            }
            let set = last == b'h';
            for n in numbers {
                match n {
                    6 => self.touched.origin_mode |= set,
                    7 => self.touched.autowrap_off |= !set,
                    25 => self.touched.cursor_hidden |= !set,
                    _ => self.touched.alternate_screen |= set,
                }
            }
            return true;
        }
        match last {
            b'm' => {
                self.touched.attributes = true;
                true
            }
            // Cursor movement and position.
            b'A'..=b'G' | b'H' | b'f' | b'd' | b'e' | b'a' | b'`' | b'I' | b'Z' => true,
            // Erase, insert, delete, scroll; tab clear; save/restore cursor.
            b'J' | b'K' | b'X' | b'@' | b'P' | b'L' | b'M' | b'S' | b'T' | b'g' | b's' | b'u' => {
                true
            }
            b'r' => {
                self.touched.scroll_region = true;
                true
            }
            // Insert mode (IRM) is the only ANSI mode let through.
            b'h' | b'l' if !params.is_empty() && numbers.iter().all(|n| *n == 4) => {
                self.touched.insert_mode |= last == b'h';
                true
            }
            _ => false,
        }
    }

    fn ground(&mut self, byte: u8, out: &mut Vec<u8>) {
        if !self.utf8.is_empty() {
            if (0x80..=0xbf).contains(&byte) {
                self.utf8.push(byte);
                if self.utf8.len() == self.utf8_len {
                    self.finish_char(out);
                }
                return;
            }
            // The character was broken off.
            self.flush_utf8(out);
        }
        match byte {
            b'\t' | b'\n' | b'\r' | 0x08 | 0x20..=0x7e => out.push(byte),
            0x00..=0x1f | DEL => {}
            0xc2..=0xdf => self.start_char(byte, 2),
            0xe0..=0xef => self.start_char(byte, 3),
            0xf0..=0xf4 => self.start_char(byte, 4),
            // A stray continuation byte, a raw 8-bit C1 control, or a byte never valid in UTF-8.
            _ => out.extend_from_slice(REPLACEMENT),
        }
    }

    fn start_char(&mut self, lead: u8, len: usize) {
        self.utf8.clear();
        self.utf8.push(lead);
        self.utf8_len = len;
    }

    fn finish_char(&mut self, out: &mut Vec<u8>) {
        match std::str::from_utf8(&self.utf8) {
            // C1 controls (CSI, OSC, DCS, … as single characters) are dropped.
            Ok(s) if s.chars().all(|c| ('\u{80}'..='\u{9f}').contains(&c)) => {}
            Ok(_) => out.extend_from_slice(&self.utf8),
            // Overlong forms, surrogates, beyond U+10FFFF.
            Err(_) => out.extend_from_slice(REPLACEMENT),
        }
        self.utf8.clear();
    }

    /// An unfinished character becomes U+FFFD.
    fn flush_utf8(&mut self, out: &mut Vec<u8>) {
        if !self.utf8.is_empty() {
            out.extend_from_slice(REPLACEMENT);
            self.utf8.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(input: &[u8]) -> Vec<u8> {
        let mut s = TerminalSanitizer::new();
        let mut out = Vec::new();
        s.feed(input, &mut out);
        out
    }

    /// Feeds one byte at a time: a sequence split across chunks must be treated the same.
    fn clean_bytewise(input: &[u8]) -> Vec<u8> {
        let mut s = TerminalSanitizer::new();
        let mut out = Vec::new();
        for b in input {
            s.feed(std::slice::from_ref(b), &mut out);
        }
        out
    }

    fn both(input: &[u8]) -> Vec<u8> {
        let whole = clean(input);
        assert_eq!(whole, clean_bytewise(input), "split input differs");
        whole
    }

    #[test]
    fn security_osc_52_clipboard_write_is_removed() {
        // OSC 52 sets the clipboard ("c") to base64 text: a replayed session must not be able to
        // put a command into the operator's clipboard. Both terminators (BEL, ST).
        assert_eq!(both(b"a\x1b]52;c;cm0gLXJmIH4K\x07b"), b"ab");
        assert_eq!(both(b"a\x1b]52;c;cm0gLXJmIH4K\x1b\\b"), b"ab");
    }

    #[test]
    fn security_osc_0_title_change_is_removed() {
        assert_eq!(both(b"\x1b]0;you have been pwned\x07login: "), b"login: ");
        assert_eq!(both(b"\x1b]2;title\x1b\\ok"), b"ok");
    }

    #[test]
    fn colours_and_cursor_movement_are_kept() {
        let input =
            b"\x1b[1;31mALARM\x1b[0m \x1b[38;5;208mwarn\x1b[m\x1b[2J\x1b[10;20H\x1b[K\x1b[3A";
        assert_eq!(both(input), input);
        assert_eq!(both(b"\x1b[38:2:255:0:0mrgb"), b"\x1b[38:2:255:0:0mrgb");
    }

    #[test]
    fn ordinary_controls_are_kept_others_dropped() {
        assert_eq!(both(b"a\tb\r\nc\x08d"), b"a\tb\r\nc\x08d");
        // BEL, ENQ (answerback: the terminal would type a reply), SO (charset switch), NUL, DEL.
        assert_eq!(both(b"a\x07b\x05c\x0ed\x0fe\x00f\x7fg"), b"abcdefg");
    }

    #[test]
    fn security_terminal_reports_and_window_operations_are_removed() {
        // Device status report, device attributes, report window title, resize window,
        // request mode, soft reset, printer on: all would act or answer as typed input.
        for seq in [
            &b"\x1b[6n"[..],
            b"\x1b[c",
            b"\x1b[>c",
            b"\x1b[21t",
            b"\x1b[8;100;300t",
            b"\x1b[?1$p",
            b"\x1b[!p",
            b"\x1b[5i",
            b"\x1b[?1000h", // mouse tracking
            b"\x1b[?2004h", // bracketed paste
            b"\x1b[20h",    // newline mode
            b"\x1b[5 q",    // intermediate byte
        ] {
            let mut input = b"x".to_vec();
            input.extend_from_slice(seq);
            input.push(b'y');
            assert_eq!(both(&input), b"xy", "{seq:?} was let through");
        }
    }

    #[test]
    fn security_dcs_apc_pm_sos_strings_are_removed() {
        assert_eq!(both(b"a\x1bP$q\"p\x1b\\b"), b"ab"); // DECRQSS
        assert_eq!(both(b"a\x1b_Gf=100;payload\x1b\\b"), b"ab"); // APC (kitty graphics)
        assert_eq!(both(b"a\x1b^private\x1b\\b"), b"ab");
        assert_eq!(both(b"a\x1bXstring\x1b\\b"), b"ab");
        // BEL does not end a DCS: its content stays hidden until ST.
        assert_eq!(both(b"a\x1bPq\x07#0;2;0;0;0\x1b\\b"), b"ab");
    }

    #[test]
    fn security_c1_controls_are_removed_in_every_encoding() {
        // U+009D (OSC) and U+009B (CSI) as UTF-8: dropped, the rest shows as text.
        assert_eq!(both("a\u{9d}0;t\u{7}b".as_bytes()), b"a0;tb");
        assert_eq!(both("\u{9b}31m".as_bytes()), b"31m");
        // Raw 8-bit C1 bytes are not UTF-8: replaced.
        assert_eq!(both(b"a\x9b6nb"), "a\u{FFFD}6nb".as_bytes());
    }

    #[test]
    fn other_escape_sequences() {
        // Kept: save/restore cursor, index, next line, reverse index.
        assert_eq!(
            both(b"\x1b7\x1b8\x1bD\x1bE\x1bM"),
            b"\x1b7\x1b8\x1bD\x1bE\x1bM"
        );
        // Dropped: character set designation, keypad mode, full reset, identify, DECALN.
        assert_eq!(
            both(b"a\x1b(0b\x1b)Bc\x1b=d\x1bce\x1bZf\x1b#8g"),
            b"abcdefg"
        );
    }

    #[test]
    fn cancelled_and_broken_sequences() {
        // CAN and SUB cancel; a control inside CSI breaks it off and is read as itself.
        assert_eq!(both(b"a\x1b[31\x18b\x1b]0;x\x1ac"), b"abc");
        assert_eq!(both(b"a\x1b[31\nm"), b"a\nm");
        // ESC inside a sequence starts a new one.
        assert_eq!(both(b"\x1b[31\x1b[1mx"), b"\x1b[1mx");
    }

    #[test]
    fn security_oversized_parameters_are_dropped() {
        let mut long = b"\x1b[".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        long.extend_from_slice(b"mok");
        assert_eq!(both(&long), b"ok");
        assert_eq!(both(b"\x1b[99999@ok"), b"ok");
        assert_eq!(both(b"\x1b[9999@ok"), b"\x1b[9999@ok");
    }

    #[test]
    fn utf8_text_is_kept_even_when_split() {
        let text = "Débit: 5 ml/h — ok ✓ 🩺".as_bytes();
        assert_eq!(both(text), text);
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(both(b"a\xffb"), "a\u{FFFD}b".as_bytes());
        assert_eq!(both(b"a\xc3b"), "a\u{FFFD}b".as_bytes());
        assert_eq!(both(b"\xe0\x80\x80"), "\u{FFFD}".as_bytes()); // overlong
        assert_eq!(both(b"\xed\xa0\x80"), "\u{FFFD}".as_bytes()); // surrogate
                                                                  // A character broken off by ESC: replaced, and the sequence still works.
        assert_eq!(both(b"\xe2\x82\x1b[1m"), "\u{FFFD}\x1b[1m".as_bytes());
    }

    /// What may appear in sanitized output, checked independently of the sanitizer's states:
    /// valid UTF-8; no control characters but TAB, LF, CR, BS and ESC; every ESC starts one of
    /// the kept ESC sequences or a CSI of digits and separators (optionally `?`) ending in a
    /// kept final byte.
    fn assert_safe(out: &[u8]) {
        let text = std::str::from_utf8(out).expect("sanitized output is UTF-8");
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\t' | '\n' | '\r' | '\u{8}' => {}
                '\u{1b}' => match chars.next() {
                    Some('7' | '8' | 'D' | 'E' | 'M') => {}
                    Some('[') => {
                        let mut params = String::new();
                        let last = loop {
                            match chars.next() {
                                Some(p @ ('0'..='9' | ';' | ':' | '?')) => params.push(p),
                                Some(last) => break last,
                                None => panic!("unfinished CSI in {text:?}"),
                            }
                        };
                        assert!(
                            "mABCDEFGHfdea`IZJKX@PLMSTgsurhl".contains(last),
                            "CSI {params:?} {last:?} in {text:?}"
                        );
                        assert!(!params[1.min(params.len())..].contains('?'));
                        assert!(params.len() <= MAX_CSI_PARAMS);
                    }
                    other => panic!("ESC {other:?} in {text:?}"),
                },
                c if c.is_control() => panic!("control {c:?} in {text:?}"),
                _ => {}
            }
        }
    }

    #[test]
    #[should_panic(expected = "ESC Some(']')")]
    fn the_output_check_catches_an_osc() {
        assert_safe(b"ok\x1b]0;title\x07");
    }

    #[test]
    fn security_random_input_never_yields_unsafe_output() {
        // Inputs drawn mostly from the bytes that matter to a terminal parser, so escape
        // sequences of every kind, broken and nested, come up often. Deterministic (xorshift).
        const ALPHABET: &[u8] =
            b"\x1b\x1b\x1b[[]]P_^X\\?;:0123456789mhlHJtnqc$ !\x07\x18\x1a\x05\x0e\
            \r\n\t\x08\x7f\x9b\x9d\xc2\xe2\x82\xacaZ";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let len = (next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 8 == 0 {
                        (r >> 8) as u8 // any byte
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            // Whole, and split at a random point: the same output, and safe.
            let mut whole = Vec::new();
            let mut s = TerminalSanitizer::new();
            s.feed(&input, &mut whole);
            s.finish(&mut whole);
            let cut = if len == 0 { 0 } else { (next() as usize) % len };
            let mut split = Vec::new();
            let mut s = TerminalSanitizer::new();
            s.feed(&input[..cut], &mut split);
            s.feed(&input[cut..], &mut split);
            s.finish(&mut split);
            assert_eq!(whole, split, "input {input:?} split at {cut}");
            assert_safe(&whole);
        }
    }

    #[test]
    fn finish_undoes_what_the_replay_changed() {
        let mut s = TerminalSanitizer::new();
        let mut out = Vec::new();
        s.feed(
            b"\x1b[?1049h\x1b[?25l\x1b[5;20r\x1b[4h\x1b[31mtext\xe2\x82",
            &mut out,
        );
        out.clear();
        s.finish(&mut out);
        assert_eq!(
            out,
            "\u{FFFD}\x1b[?1049l\x1b[r\x1b[4l\x1b[?25h\x1b[0m".as_bytes()
        );
        // Nothing changed, nothing to undo.
        let mut s = TerminalSanitizer::new();
        let mut out = Vec::new();
        s.feed(b"plain\r\n", &mut out);
        out.clear();
        s.finish(&mut out);
        assert!(out.is_empty());
    }
}
