//! ISO/IEC 7816-4 command and response APDUs, and the hex helpers operators type them with.
//!
//! A [`CommandApdu`] is `CLA INS P1 P2 [Lc data] [Le]` in one of the four cases, each in the
//! short or the extended length form (ISO/IEC 7816-3 §12.1.3 decoding rules). Parsing keeps the
//! form that was used, so a parsed APDU encodes back to the same bytes; a built one uses the short
//! form whenever it fits. A [`ResponseApdu`] is the response data followed by `SW1 SW2`.

use std::fmt;

/// Largest command data field in the short form (Lc = 1..=255).
pub const SHORT_MAX_DATA: usize = 255;
/// Largest expected response length in the short form (Le = `00` means 256).
pub const SHORT_MAX_NE: u32 = 256;
/// Largest command data field in the extended form (Lc = 1..=65535).
pub const EXTENDED_MAX_DATA: usize = 65_535;
/// Largest expected response length in the extended form (Le = `0000` means 65536).
pub const EXTENDED_MAX_NE: u32 = 65_536;

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("hex input has an odd number of digits ({digits}); each byte needs two")]
    OddDigits { digits: usize },
    #[error("invalid hex character {found:?} at position {position}")]
    InvalidChar { found: char, position: usize },
    #[error("hex input is empty")]
    Empty,
}

/// Parses hex digits into bytes. ASCII whitespace between digits is ignored (so `00 A4 04 00`
/// works); anything else that is not a hex digit is refused with its character position.
pub fn parse_hex(input: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity(input.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0usize;
    for (position, found) in input.chars().enumerate() {
        if found.is_ascii_whitespace() {
            continue;
        }
        let nibble = found
            .to_digit(16)
            .ok_or(HexError::InvalidChar { found, position })? as u8;
        digits += 1;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push(h << 4 | nibble),
        }
    }
    if high.is_some() {
        return Err(HexError::OddDigits { digits });
    }
    Ok(out)
}

/// Like [`parse_hex`], but an input without any digit is an error.
pub fn parse_hex_nonempty(input: &str) -> Result<Vec<u8>, HexError> {
    let bytes = parse_hex(input)?;
    if bytes.is_empty() {
        return Err(HexError::Empty);
    }
    Ok(bytes)
}

/// Upper-case hex without separators, the form used in logs, headers and the dashboard.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0F)] as char);
    }
    s
}

/// Why bytes are not a valid command APDU (ISO/IEC 7816-3 §12.1.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    #[error("command APDU of {len} byte(s) is shorter than the 4-byte header")]
    TooShort { len: usize },
    #[error("Lc says {lc} data byte(s) but {available} byte(s) follow it; {expected_total} or {expected_total_with_le} bytes expected in total, got {len}")]
    LcMismatch {
        lc: usize,
        available: usize,
        expected_total: usize,
        expected_total_with_le: usize,
        len: usize,
    },
    #[error("extended length marker 00 is followed by {available} byte(s); 2 (Le) or 2 + Lc (+ 2) expected")]
    BadExtendedLength { available: usize },
    #[error("command data of {len} bytes exceeds the extended maximum of 65535")]
    DataTooLong { len: usize },
    #[error("expected response length {ne} is out of range (1..=65536)")]
    BadNe { ne: u32 },
    #[error("short form cannot carry {data} data byte(s) and Ne={ne:?}")]
    DoesNotFitShort { data: usize, ne: Option<u32> },
    #[error(transparent)]
    Hex(#[from] HexError),
}

/// An ISO/IEC 7816-4 command APDU.
///
/// Invariants: the data field is at most 65535 bytes; Ne (the expected response length) is
/// absent or 1..=65536; in the short form, data is at most 255 bytes and Ne at most 256.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CommandApdu {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: Vec<u8>,
    ne: Option<u32>,
    extended: bool,
}

impl CommandApdu {
    /// A command with no data and no Le (case 1).
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            ne: None,
            extended: false,
        }
    }

    /// Sets the command data; switches to the extended form if it does not fit the short one.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Result<Self, ApduError> {
        let data = data.into();
        if data.len() > EXTENDED_MAX_DATA {
            return Err(ApduError::DataTooLong { len: data.len() });
        }
        self.data = data;
        self.extended = self.needs_extended();
        Ok(self)
    }

    /// Sets Ne, the maximum number of response bytes expected (1..=65536; 256 is short `Le=00`).
    pub fn with_ne(mut self, ne: u32) -> Result<Self, ApduError> {
        if ne == 0 || ne > EXTENDED_MAX_NE {
            return Err(ApduError::BadNe { ne });
        }
        self.ne = Some(ne);
        self.extended = self.needs_extended();
        Ok(self)
    }

    /// Forces the extended length form even where the short one would do. Case 1 (no data, no
    /// Le) has no length field, so it stays as it is. Call this last: `with_data` and `with_ne`
    /// choose the form again.
    pub fn with_extended_form(mut self) -> Self {
        self.extended = self.case() != 1;
        self
    }

    /// Forces the short length form; fails if data or Ne do not fit.
    pub fn with_short_form(mut self) -> Result<Self, ApduError> {
        if self.needs_extended() {
            return Err(ApduError::DoesNotFitShort {
                data: self.data.len(),
                ne: self.ne,
            });
        }
        self.extended = false;
        Ok(self)
    }

    fn needs_extended(&self) -> bool {
        self.data.len() > SHORT_MAX_DATA || self.ne.is_some_and(|ne| ne > SHORT_MAX_NE)
    }

    pub fn cla(&self) -> u8 {
        self.cla
    }
    pub fn ins(&self) -> u8 {
        self.ins
    }
    pub fn p1(&self) -> u8 {
        self.p1
    }
    pub fn p2(&self) -> u8 {
        self.p2
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Maximum number of response data bytes expected, if Le is present.
    pub fn ne(&self) -> Option<u32> {
        self.ne
    }
    pub fn is_extended(&self) -> bool {
        self.extended
    }

    /// ISO/IEC 7816-3 case number (1 to 4).
    pub fn case(&self) -> u8 {
        match (self.data.is_empty(), self.ne.is_some()) {
            (true, false) => 1,
            (true, true) => 2,
            (false, false) => 3,
            (false, true) => 4,
        }
    }

    /// Parses a command APDU; the whole input must be one APDU.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let len = bytes.len();
        if len < 4 {
            return Err(ApduError::TooShort { len });
        }
        let (cla, ins, p1, p2) = (bytes[0], bytes[1], bytes[2], bytes[3]);
        let mut apdu = Self::new(cla, ins, p1, p2);
        let body = &bytes[4..];
        match body {
            [] => Ok(apdu),
            // Case 2S: Le alone, 00 meaning 256.
            [le] => {
                apdu.ne = Some(if *le == 0 { 256 } else { u32::from(*le) });
                Ok(apdu)
            }
            [0, rest @ ..] => {
                apdu.extended = true;
                Self::parse_extended(apdu, rest, len)
            }
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                if rest.len() == lc {
                    apdu.data = rest.to_vec();
                    Ok(apdu)
                } else if rest.len() == lc + 1 {
                    apdu.data = rest[..lc].to_vec();
                    let le = rest[lc];
                    apdu.ne = Some(if le == 0 { 256 } else { u32::from(le) });
                    Ok(apdu)
                } else {
                    Err(ApduError::LcMismatch {
                        lc,
                        available: rest.len(),
                        expected_total: 5 + lc,
                        expected_total_with_le: 6 + lc,
                        len,
                    })
                }
            }
        }
    }

    fn parse_extended(mut apdu: Self, rest: &[u8], len: usize) -> Result<Self, ApduError> {
        if rest.len() < 2 {
            return Err(ApduError::BadExtendedLength {
                available: rest.len(),
            });
        }
        let first = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let after = &rest[2..];
        if after.is_empty() {
            // Case 2E: 00 Le1 Le2, 0000 meaning 65536.
            apdu.ne = Some(if first == 0 { 65_536 } else { first as u32 });
            return Ok(apdu);
        }
        if first == 0 {
            // Lc = 0000 is not a valid extended Lc.
            return Err(ApduError::BadExtendedLength {
                available: rest.len(),
            });
        }
        let lc = first;
        if after.len() == lc {
            apdu.data = after.to_vec();
            Ok(apdu)
        } else if after.len() == lc + 2 {
            apdu.data = after[..lc].to_vec();
            let le = usize::from(u16::from_be_bytes([after[lc], after[lc + 1]]));
            apdu.ne = Some(if le == 0 { 65_536 } else { le as u32 });
            Ok(apdu)
        } else {
            Err(ApduError::LcMismatch {
                lc,
                available: after.len(),
                expected_total: 7 + lc,
                expected_total_with_le: 9 + lc,
                len,
            })
        }
    }

    /// Parses hex (whitespace allowed) into a command APDU.
    pub fn from_hex(input: &str) -> Result<Self, ApduError> {
        Self::parse(&parse_hex(input)?)
    }

    /// Encodes the APDU in its length form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 3 + self.data.len() + 3);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.extended {
            if !self.data.is_empty() {
                out.push(0);
                out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.ne {
                if self.data.is_empty() {
                    out.push(0);
                }
                let le = if ne == 65_536 { 0 } else { ne as u16 };
                out.extend_from_slice(&le.to_be_bytes());
            }
        } else {
            if !self.data.is_empty() {
                out.push(self.data.len() as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.ne {
                out.push(if ne == 256 { 0 } else { ne as u8 });
            }
        }
        out
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.to_bytes())
    }
}

impl fmt::Debug for CommandApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandApdu({})", self.to_hex())
    }
}

impl fmt::Display for CommandApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why bytes are not a valid response APDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("response APDU of {len} byte(s) lacks the 2-byte status word")]
    TooShort { len: usize },
    #[error(transparent)]
    Hex(#[from] HexError),
}

/// An ISO/IEC 7816-4 response APDU: response data followed by `SW1 SW2`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResponseApdu {
    data: Vec<u8>,
    sw: u16,
}

impl ResponseApdu {
    pub fn new(data: impl Into<Vec<u8>>, sw: u16) -> Self {
        Self {
            data: data.into(),
            sw,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ResponseError> {
        match bytes {
            [data @ .., sw1, sw2] => Ok(Self::new(data, u16::from_be_bytes([*sw1, *sw2]))),
            _ => Err(ResponseError::TooShort { len: bytes.len() }),
        }
    }

    pub fn from_hex(input: &str) -> Result<Self, ResponseError> {
        Self::parse(&parse_hex(input)?)
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn sw(&self) -> u16 {
        self.sw
    }
    pub fn sw1(&self) -> u8 {
        (self.sw >> 8) as u8
    }
    pub fn sw2(&self) -> u8 {
        self.sw as u8
    }

    /// `90 00`, or `61 xx` (normal processing, more bytes available).
    pub fn is_success(&self) -> bool {
        self.sw == 0x9000 || self.sw1() == 0x61
    }

    /// `62 xx` / `63 xx`: processed with a warning (e.g. GET STATUS `63 10`, more data).
    pub fn is_warning(&self) -> bool {
        matches!(self.sw1(), 0x62 | 0x63)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.to_bytes())
    }

    /// A short human-readable meaning of the status word (ISO/IEC 7816-4 and GlobalPlatform).
    pub fn status_text(&self) -> &'static str {
        status_text(self.sw)
    }
}

impl fmt::Debug for ResponseApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResponseApdu(data={}, sw={:04X})",
            to_hex(&self.data),
            self.sw
        )
    }
}

/// Common status words and what they mean (ISO/IEC 7816-4 §5.6, GP Card Specification §11.1.3).
pub fn status_text(sw: u16) -> &'static str {
    match sw {
        0x9000 => "success",
        0x6200 => "warning: logical channel already closed",
        0x6283 => "warning: card life cycle state is CARD_LOCKED / selected file deactivated",
        0x6310 => "warning: more data available",
        0x6400 => "execution error: no specific diagnosis",
        0x6581 => "execution error: memory failure",
        0x6700 => "wrong length",
        0x6881 => "logical channel not supported or not active",
        0x6882 => "secure messaging not supported",
        0x6982 => "security status not satisfied",
        0x6985 => "conditions of use not satisfied",
        0x6A80 => "incorrect values in command data",
        0x6A81 => "function not supported",
        0x6A82 => "application or file not found",
        0x6A84 => "not enough memory space",
        0x6A86 => "incorrect P1 P2",
        0x6A88 => "referenced data not found",
        0x6D00 => "instruction not supported",
        0x6E00 => "class not supported",
        0x9484 => "algorithm not supported",
        0x9485 => "invalid key check value",
        sw if sw >> 8 == 0x61 => "success, more response bytes available",
        sw if sw >> 8 == 0x6C => "wrong Le, exact length in SW2",
        sw if sw >> 8 == 0x62 || sw >> 8 == 0x63 => "warning",
        sw if sw >> 8 == 0x64 || sw >> 8 == 0x65 || sw >> 8 == 0x66 => "execution error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_accepts_spaces_and_case() {
        assert_eq!(
            parse_hex("00 a4 04 0C").unwrap(),
            vec![0x00, 0xA4, 0x04, 0x0C]
        );
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(to_hex(&[0x0a, 0xff]), "0AFF");
    }

    #[test]
    fn hex_rejects_odd_and_invalid() {
        assert_eq!(parse_hex("abc"), Err(HexError::OddDigits { digits: 3 }));
        assert_eq!(parse_hex("0 0 0"), Err(HexError::OddDigits { digits: 3 }));
        assert_eq!(
            parse_hex("00zz"),
            Err(HexError::InvalidChar {
                found: 'z',
                position: 2
            })
        );
        assert_eq!(
            parse_hex("0x00"),
            Err(HexError::InvalidChar {
                found: 'x',
                position: 1
            })
        );
        assert_eq!(parse_hex_nonempty("  "), Err(HexError::Empty));
    }

    #[test]
    fn short_cases() {
        let c1 = CommandApdu::from_hex("80CA0066").unwrap();
        assert_eq!((c1.case(), c1.ne(), c1.data()), (1, None, &[][..]));
        let c2 = CommandApdu::from_hex("80CA006600").unwrap();
        assert_eq!((c2.case(), c2.ne()), (2, Some(256)));
        let c3 = CommandApdu::from_hex("00A4040008A000000003000000").unwrap();
        assert_eq!((c3.case(), c3.data().len()), (3, 8));
        let c4 = CommandApdu::from_hex("00A4040008A00000000300000010").unwrap();
        assert_eq!((c4.case(), c4.ne()), (4, Some(16)));
        for c in [c1, c2, c3, c4] {
            assert!(!c.is_extended());
            assert_eq!(CommandApdu::parse(&c.to_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn extended_cases() {
        let c2 = CommandApdu::from_hex("80CA0066 000000").unwrap();
        assert_eq!(
            (c2.case(), c2.ne(), c2.is_extended()),
            (2, Some(65_536), true)
        );
        let c3 = CommandApdu::from_hex("80E80000 000003 010203").unwrap();
        assert_eq!((c3.case(), c3.data(), c3.ne()), (3, &[1, 2, 3][..], None));
        let c4 = CommandApdu::from_hex("80E80000 000002 0102 0100").unwrap();
        assert_eq!((c4.case(), c4.ne()), (4, Some(256)));
        assert_eq!(c4.to_hex(), "80E8000000000201020100");
        let big = CommandApdu::new(0x80, 0xE8, 0, 0)
            .with_data(vec![0x55; 300])
            .unwrap()
            .with_ne(65_536)
            .unwrap();
        assert!(big.is_extended());
        let bytes = big.to_bytes();
        assert_eq!(&bytes[4..7], &[0x00, 0x01, 0x2C]);
        assert_eq!(&bytes[bytes.len() - 2..], &[0x00, 0x00]);
        assert_eq!(CommandApdu::parse(&bytes).unwrap(), big);
    }

    #[test]
    fn inconsistent_lengths_are_rejected() {
        assert_eq!(
            CommandApdu::parse(&[0x00, 0xA4, 0x04]),
            Err(ApduError::TooShort { len: 3 })
        );
        // Lc=5 but only 3 bytes follow.
        assert!(matches!(
            CommandApdu::from_hex("00A4040005 010203"),
            Err(ApduError::LcMismatch {
                lc: 5,
                available: 3,
                ..
            })
        ));
        // Lc=2 and 4 bytes follow: too many for Le.
        assert!(matches!(
            CommandApdu::from_hex("00A4040002 01020304"),
            Err(ApduError::LcMismatch { .. })
        ));
        // Extended marker with one byte only.
        assert!(matches!(
            CommandApdu::from_hex("00A40400 0001"),
            Err(ApduError::BadExtendedLength { .. })
        ));
        // Extended Lc = 0000 followed by data.
        assert!(matches!(
            CommandApdu::from_hex("00A40400 000000 01"),
            Err(ApduError::BadExtendedLength { .. })
        ));
        // Extended Lc=3 with one extra byte.
        assert!(matches!(
            CommandApdu::from_hex("00A40400 000003 010203 00"),
            Err(ApduError::LcMismatch { .. })
        ));
        assert!(matches!(
            CommandApdu::from_hex("00A4040"),
            Err(ApduError::Hex(HexError::OddDigits { .. }))
        ));
    }

    #[test]
    fn builder_limits() {
        assert_eq!(
            CommandApdu::new(0, 0, 0, 0).with_ne(0),
            Err(ApduError::BadNe { ne: 0 })
        );
        assert!(CommandApdu::new(0, 0, 0, 0).with_ne(65_537).is_err());
        assert!(CommandApdu::new(0, 0, 0, 0)
            .with_data(vec![0; 65_536])
            .is_err());
        let forced = CommandApdu::new(0, 0xB0, 0, 0)
            .with_ne(10)
            .unwrap()
            .with_extended_form();
        assert_eq!(forced.to_hex(), "00B0000000000A");
        let case1 = CommandApdu::new(0, 0, 0, 0).with_extended_form();
        assert!(!case1.is_extended(), "case 1 has no length field to extend");
        assert_eq!(CommandApdu::parse(&case1.to_bytes()).unwrap(), case1);
        assert!(CommandApdu::new(0, 0, 0, 0)
            .with_data(vec![1; 256])
            .unwrap()
            .with_short_form()
            .is_err());
    }

    #[test]
    fn response_apdu() {
        let r = ResponseApdu::from_hex("6F10 9000").unwrap();
        assert_eq!(r.data(), &[0x6F, 0x10]);
        assert_eq!(r.sw(), 0x9000);
        assert!(r.is_success());
        let r = ResponseApdu::from_hex("6310").unwrap();
        assert!(r.is_warning() && !r.is_success());
        assert_eq!(r.status_text(), "warning: more data available");
        assert!(ResponseApdu::from_hex("6A").is_err());
        assert_eq!(
            ResponseApdu::parse(&[0x90]),
            Err(ResponseError::TooShort { len: 1 })
        );
        assert!(ResponseApdu::new(vec![], 0x6112).is_success());
    }

    fn arb_command() -> impl Strategy<Value = CommandApdu> {
        (
            any::<[u8; 4]>(),
            prop::collection::vec(any::<u8>(), 0..300),
            prop::option::of(1u32..=65_536),
            any::<bool>(),
        )
            .prop_map(|(h, data, ne, force_ext)| {
                let mut c = CommandApdu::new(h[0], h[1], h[2], h[3])
                    .with_data(data)
                    .unwrap();
                if let Some(ne) = ne {
                    c = c.with_ne(ne).unwrap();
                }
                if force_ext {
                    c = c.with_extended_form();
                }
                c
            })
    }

    proptest! {
        #[test]
        fn command_roundtrip(c in arb_command()) {
            prop_assert_eq!(CommandApdu::parse(&c.to_bytes()).unwrap(), c);
        }

        #[test]
        fn command_parse_never_panics_and_reencodes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(c) = CommandApdu::parse(&bytes) {
                prop_assert_eq!(c.to_bytes(), bytes);
            }
        }

        #[test]
        fn response_roundtrip(data in prop::collection::vec(any::<u8>(), 0..300), sw in any::<u16>()) {
            let r = ResponseApdu::new(data, sw);
            prop_assert_eq!(ResponseApdu::parse(&r.to_bytes()).unwrap(), r);
        }

        #[test]
        fn hex_roundtrip(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(parse_hex(&to_hex(&bytes)).unwrap(), bytes);
        }
    }
}
