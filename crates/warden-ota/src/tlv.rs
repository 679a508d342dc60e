//! BER-TLV as ISO/IEC 7816-4, ETSI TS 101 220 and GlobalPlatform use it.
//!
//! Tags are 1 to 3 bytes and kept exactly as they were encoded. Lengths are definite — short form
//! (`00`..`7F`) or long form (`81`..`84` followed by 1 to 4 bytes) — or indefinite (`80`, closed
//! by the end-of-contents marker `00 00`, allowed for constructed data objects only).
//!
//! The decoder is strict so that everything it accepts encodes back to the same bytes: a long-form
//! length that would fit a shorter form, a tag byte `00`, padding, trailing bytes and truncation
//! are errors naming the byte offset where the problem starts. Lengths are checked against the
//! bytes actually present before anything is allocated, and [`Limits`] bound size, element count
//! and nesting depth.

use std::fmt;

/// A BER-TLV tag of 1 to 3 bytes, held as its encoded bytes read big-endian (e.g. `0x9F70`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(u32);

impl Tag {
    /// Builds a tag from its encoded bytes read big-endian (`0x4F`, `0x9F70`, `0xBF2201`).
    pub fn new(value: u32) -> Result<Self, TagError> {
        let bytes = value.to_be_bytes();
        let first_nonzero = bytes.iter().position(|&b| b != 0).unwrap_or(3);
        let encoded = &bytes[first_nonzero..];
        match parse_tag_bytes(encoded) {
            Some(n) if n == encoded.len() => Ok(Self(value)),
            _ => Err(TagError { value }),
        }
    }

    /// For constants known to be well formed; checked in this module's tests.
    pub(crate) const fn known(value: u32) -> Self {
        Self(value)
    }

    /// The encoded bytes read big-endian.
    pub fn value(self) -> u32 {
        self.0
    }

    /// Number of encoded bytes (1 to 3).
    pub fn len(self) -> usize {
        match self.0 {
            0..=0xFF => 1,
            0x100..=0xFFFF => 2,
            _ => 3,
        }
    }

    /// Always false: a tag has at least one byte. (Present for clippy's `len_without_is_empty`.)
    pub fn is_empty(self) -> bool {
        false
    }

    pub fn to_bytes(self) -> Vec<u8> {
        self.0.to_be_bytes()[4 - self.len()..].to_vec()
    }

    fn first_byte(self) -> u8 {
        self.0.to_be_bytes()[4 - self.len()]
    }

    /// Bit 6 of the first byte: the value is a sequence of data objects.
    pub fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_be_bytes()[4 - self.len()..]);
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$X}", self.0, width = self.len() * 2)
    }
}

/// A value that is not a well-formed 1–3 byte BER-TLV tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:#X} is not a well-formed BER-TLV tag of 1 to 3 bytes")]
pub struct TagError {
    pub value: u32,
}

/// Number of bytes of the tag at the start of `bytes`, or None if malformed/too long/truncated.
fn parse_tag_bytes(bytes: &[u8]) -> Option<usize> {
    let first = *bytes.first()?;
    if first == 0 {
        return None;
    }
    if first & 0x1F != 0x1F {
        return Some(1);
    }
    for (i, b) in bytes.iter().enumerate().skip(1).take(2) {
        if b & 0x80 == 0 {
            return Some(i + 1);
        }
    }
    None
}

/// A decoded length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Definite(usize),
    /// `80`: the contents run until the end-of-contents marker `00 00`.
    Indefinite,
}

/// Why BER-TLV bytes were refused. Offsets count bytes from the start of the whole input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    #[error("input ends at offset {offset} in the middle of {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("invalid tag byte 00 at offset {offset}")]
    ZeroTag { offset: usize },
    #[error("tag at offset {offset} is longer than 3 bytes")]
    TagTooLong { offset: usize },
    #[error(
        "length field at offset {offset} announces {bytes} length bytes; at most 4 are supported"
    )]
    LengthTooLong { offset: usize, bytes: usize },
    #[error("length field at offset {offset} is not minimally encoded (BER long form used where a shorter form fits)")]
    NonMinimalLength { offset: usize },
    #[error("length {length} at offset {offset} runs past the end of its container ({available} byte(s) available)")]
    LengthOverflow {
        offset: usize,
        length: usize,
        available: usize,
    },
    #[error("indefinite length at offset {offset} is not allowed here (primitive tag or a context that needs a definite length)")]
    UnexpectedIndefinite { offset: usize },
    #[error("end-of-contents marker (00 00) missing for the indefinite length opened at offset {offset}")]
    MissingEndOfContents { offset: usize },
    #[error("{count} unexpected trailing byte(s) at offset {offset}")]
    TrailingData { offset: usize, count: usize },
    #[error("data objects nested deeper than {limit} levels at offset {offset}")]
    TooDeep { offset: usize, limit: usize },
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("more than {limit} data objects (at offset {offset})")]
    TooManyElements { offset: usize, limit: usize },
}

/// The header of one data object: where it starts, its tag and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Offset of the first tag byte.
    pub offset: usize,
    pub tag: Tag,
    pub length: Length,
    /// Offset of the first value byte.
    pub value_offset: usize,
}

/// One data object with a definite length, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTlv<'a> {
    pub offset: usize,
    pub tag: Tag,
    pub value: &'a [u8],
    pub value_offset: usize,
}

/// A cursor over BER-TLV bytes that reports absolute offsets.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_base(buf, 0)
    }

    /// A reader over a slice that starts at offset `base` of the whole input.
    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Absolute offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// True if the next two bytes are the end-of-contents marker `00 00`.
    pub fn at_end_of_contents(&self) -> bool {
        self.buf[self.pos..].starts_with(&[0, 0])
    }

    /// Consumes `00 00`; the caller checked [`Self::at_end_of_contents`].
    pub fn skip_end_of_contents(&mut self) {
        debug_assert!(self.at_end_of_contents());
        self.pos += 2;
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TlvError> {
        if self.remaining() < n {
            return Err(TlvError::Truncated {
                offset: self.base + self.buf.len(),
                what,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn read_tag(&mut self) -> Result<Tag, TlvError> {
        let offset = self.offset();
        let first = self.take(1, "a tag")?[0];
        if first == 0 {
            return Err(TlvError::ZeroTag { offset });
        }
        let mut value = u32::from(first);
        if first & 0x1F != 0x1F {
            return Ok(Tag(value));
        }
        for _ in 0..2 {
            let b = self.take(1, "a multi-byte tag")?[0];
            value = value << 8 | u32::from(b);
            if b & 0x80 == 0 {
                return Ok(Tag(value));
            }
        }
        Err(TlvError::TagTooLong { offset })
    }

    fn read_length(&mut self) -> Result<Length, TlvError> {
        let offset = self.offset();
        let first = self.take(1, "a length")?[0];
        if first < 0x80 {
            return Ok(Length::Definite(usize::from(first)));
        }
        if first == 0x80 {
            return Ok(Length::Indefinite);
        }
        let n = usize::from(first & 0x7F);
        if n > 4 {
            return Err(TlvError::LengthTooLong { offset, bytes: n });
        }
        let bytes = self.take(n, "a long-form length")?;
        if bytes[0] == 0 || (n == 1 && bytes[0] < 0x80) {
            return Err(TlvError::NonMinimalLength { offset });
        }
        let value = bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        // At most 4 bytes: fits u64, and usize on every platform we build for is >= 32 bits.
        Ok(Length::Definite(
            usize::try_from(value).unwrap_or(usize::MAX),
        ))
    }

    /// Reads a tag and a length, checking a definite length against the bytes left.
    pub fn read_header(&mut self) -> Result<Header, TlvError> {
        let offset = self.offset();
        let tag = self.read_tag()?;
        let length_offset = self.offset();
        let length = self.read_length()?;
        if let Length::Definite(length) = length {
            if length > self.remaining() {
                return Err(TlvError::LengthOverflow {
                    offset: length_offset,
                    length,
                    available: self.remaining(),
                });
            }
        }
        Ok(Header {
            offset,
            tag,
            length,
            value_offset: self.offset(),
        })
    }

    /// Reads one data object that must have a definite length.
    pub fn read_definite(&mut self) -> Result<RawTlv<'a>, TlvError> {
        let header = self.read_header()?;
        match header.length {
            Length::Definite(n) => {
                let value = self.take(n, "a value")?;
                Ok(RawTlv {
                    offset: header.offset,
                    tag: header.tag,
                    value,
                    value_offset: header.value_offset,
                })
            }
            Length::Indefinite => Err(TlvError::UnexpectedIndefinite {
                offset: header.value_offset - 1,
            }),
        }
    }

    /// Takes the value bytes of a definite header just read.
    pub fn read_value(&mut self, length: usize) -> Result<&'a [u8], TlvError> {
        self.take(length, "a value")
    }
}

/// Encodes a definite length in its minimal form.
pub fn write_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
        return;
    }
    let bytes = (length as u64).to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    out.push(0x80 | (8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Encodes one primitive data object `tag ‖ length ‖ value`.
pub fn write_tlv(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    tag.write(out);
    write_length(out, value.len());
    out.extend_from_slice(value);
}

/// Bounds on what a decoder accepts, so hostile input cannot exhaust memory or the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_input: usize,
    /// Most data objects in one input, at every level together.
    pub max_elements: usize,
    /// Deepest nesting of constructed data objects (1 = no nesting inside top-level objects).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input: 1 << 20,
            max_elements: 16_384,
            max_depth: 8,
        }
    }
}

/// A decoded data object; constructed tags (bit 6 of the first tag byte) hold children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub tag: Tag,
    pub value: TlvValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlvValue {
    Primitive(Vec<u8>),
    Constructed {
        children: Vec<Tlv>,
        /// Encoded with the indefinite length `80 … 00 00`.
        indefinite: bool,
    },
}

impl Tlv {
    pub fn primitive(tag: Tag, value: impl Into<Vec<u8>>) -> Self {
        Self {
            tag,
            value: TlvValue::Primitive(value.into()),
        }
    }

    pub fn constructed(tag: Tag, children: Vec<Tlv>) -> Self {
        Self {
            tag,
            value: TlvValue::Constructed {
                children,
                indefinite: false,
            },
        }
    }

    /// The primitive value, if this is a primitive data object.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.value {
            TlvValue::Primitive(v) => Some(v),
            TlvValue::Constructed { .. } => None,
        }
    }

    /// Children of a constructed data object (empty for a primitive one).
    pub fn children(&self) -> &[Tlv] {
        match &self.value {
            TlvValue::Primitive(_) => &[],
            TlvValue::Constructed { children, .. } => children,
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match &self.value {
            TlvValue::Primitive(v) => write_tlv(out, self.tag, v),
            TlvValue::Constructed {
                children,
                indefinite: true,
            } => {
                self.tag.write(out);
                out.push(0x80);
                for c in children {
                    c.encode_into(out);
                }
                out.extend_from_slice(&[0, 0]);
            }
            TlvValue::Constructed {
                children,
                indefinite: false,
            } => {
                let mut inner = Vec::new();
                for c in children {
                    c.encode_into(&mut inner);
                }
                write_tlv(out, self.tag, &inner);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Encodes a sequence of data objects.
pub fn encode_all(tlvs: &[Tlv]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tlvs {
        t.encode_into(&mut out);
    }
    out
}

/// Decodes a whole input as a sequence of data objects, descending into constructed ones.
pub fn decode_all(input: &[u8], limits: &Limits) -> Result<Vec<Tlv>, TlvError> {
    if input.len() > limits.max_input {
        return Err(TlvError::TooLarge {
            size: input.len(),
            limit: limits.max_input,
        });
    }
    let mut state = TreeDecoder {
        limits,
        elements: 0,
    };
    let mut reader = Reader::new(input);
    let mut out = Vec::new();
    while !reader.is_empty() {
        out.push(state.decode_one(&mut reader, 1)?);
    }
    Ok(out)
}

struct TreeDecoder<'l> {
    limits: &'l Limits,
    elements: usize,
}

impl TreeDecoder<'_> {
    fn decode_one(&mut self, reader: &mut Reader<'_>, depth: usize) -> Result<Tlv, TlvError> {
        let offset = reader.offset();
        if depth > self.limits.max_depth {
            return Err(TlvError::TooDeep {
                offset,
                limit: self.limits.max_depth,
            });
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(TlvError::TooManyElements {
                offset,
                limit: self.limits.max_elements,
            });
        }
        let header = reader.read_header()?;
        match (header.tag.is_constructed(), header.length) {
            (false, Length::Indefinite) => Err(TlvError::UnexpectedIndefinite {
                offset: header.value_offset - 1,
            }),
            (false, Length::Definite(n)) => Ok(Tlv::primitive(header.tag, reader.read_value(n)?)),
            (true, Length::Definite(n)) => {
                let value = reader.read_value(n)?;
                let mut inner = Reader::with_base(value, header.value_offset);
                let mut children = Vec::new();
                while !inner.is_empty() {
                    children.push(self.decode_one(&mut inner, depth + 1)?);
                }
                Ok(Tlv::constructed(header.tag, children))
            }
            (true, Length::Indefinite) => {
                let mut children = Vec::new();
                loop {
                    if reader.is_empty() || reader.remaining() == 1 && reader.buf[reader.pos] == 0 {
                        return Err(TlvError::MissingEndOfContents {
                            offset: header.value_offset - 1,
                        });
                    }
                    if reader.at_end_of_contents() {
                        reader.skip_end_of_contents();
                        break;
                    }
                    children.push(self.decode_one(reader, depth + 1)?);
                }
                Ok(Tlv {
                    tag: header.tag,
                    value: TlvValue::Constructed {
                        children,
                        indefinite: true,
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(v: u32) -> Tag {
        Tag::new(v).unwrap()
    }

    #[test]
    fn tags() {
        assert_eq!(t(0x4F).len(), 1);
        assert_eq!(t(0x9F70).len(), 2);
        assert_eq!(t(0xBF8101).len(), 3);
        assert_eq!(t(0x9F70).to_string(), "9F70");
        assert_eq!(t(0x9F70).to_bytes(), vec![0x9F, 0x70]);
        assert!(t(0xE3).is_constructed());
        assert!(!t(0x4F).is_constructed());
        assert!(Tag::new(0).is_err());
        assert!(
            Tag::new(0x9F).is_err(),
            "multi-byte marker without continuation"
        );
        assert!(
            Tag::new(0x9F81).is_err(),
            "continuation bit set on last byte"
        );
        assert!(
            Tag::new(0x4F4F).is_err(),
            "single-byte tag followed by junk"
        );
        assert!(Tag::new(0x9F_81_81_01).is_err(), "4 bytes");
    }

    #[test]
    fn lengths_encode_minimally() {
        let mut out = Vec::new();
        for (n, want) in [
            (0usize, vec![0x00]),
            (0x7F, vec![0x7F]),
            (0x80, vec![0x81, 0x80]),
            (0xFF, vec![0x81, 0xFF]),
            (0x100, vec![0x82, 0x01, 0x00]),
            (0x1_0000, vec![0x83, 0x01, 0x00, 0x00]),
            (0x100_0000, vec![0x84, 0x01, 0x00, 0x00, 0x00]),
        ] {
            out.clear();
            write_length(&mut out, n);
            assert_eq!(out, want, "length {n}");
        }
    }

    #[test]
    fn rejects_with_offsets() {
        let l = Limits::default();
        assert_eq!(
            decode_all(&[0x4F, 0x05, 1, 2], &l),
            Err(TlvError::LengthOverflow {
                offset: 1,
                length: 5,
                available: 2
            })
        );
        assert_eq!(
            decode_all(&[0x4F, 0x81, 0x05, 1, 2, 3, 4, 5], &l),
            Err(TlvError::NonMinimalLength { offset: 1 })
        );
        assert_eq!(
            decode_all(&[0x4F, 0x82, 0x00, 0x85], &l),
            Err(TlvError::NonMinimalLength { offset: 1 })
        );
        assert_eq!(
            decode_all(&[0x4F, 0x85, 1, 1, 1, 1, 1], &l),
            Err(TlvError::LengthTooLong {
                offset: 1,
                bytes: 5
            })
        );
        assert_eq!(
            decode_all(&[0x4F, 0x84, 0xFF, 0xFF], &l),
            Err(TlvError::Truncated {
                offset: 4,
                what: "a long-form length"
            })
        );
        assert_eq!(
            decode_all(&[0x4F, 0x01, 0xAA, 0x00], &l),
            Err(TlvError::ZeroTag { offset: 3 })
        );
        assert_eq!(
            decode_all(&[0x9F], &l),
            Err(TlvError::Truncated {
                offset: 1,
                what: "a multi-byte tag"
            })
        );
        assert_eq!(
            decode_all(&[0x9F, 0x81, 0x81, 0x01, 0x00], &l),
            Err(TlvError::TagTooLong { offset: 0 })
        );
        assert_eq!(
            decode_all(&[0x4F, 0x80, 0x00, 0x00], &l),
            Err(TlvError::UnexpectedIndefinite { offset: 1 })
        );
        assert_eq!(
            decode_all(&[0xE3, 0x80, 0x4F, 0x00], &l),
            Err(TlvError::MissingEndOfContents { offset: 1 })
        );
        assert_eq!(
            decode_all(&[0xE3, 0x80, 0x4F, 0x00, 0x00], &l),
            Err(TlvError::MissingEndOfContents { offset: 1 })
        );
        // Child overflows its parent's definite length.
        assert_eq!(
            decode_all(&[0xE3, 0x03, 0x4F, 0x05, 0x01, 0x02, 0x03], &l),
            Err(TlvError::LengthOverflow {
                offset: 3,
                length: 5,
                available: 1
            })
        );
    }

    #[test]
    fn limits_are_enforced() {
        let tight = Limits {
            max_input: 8,
            max_elements: 2,
            max_depth: 2,
        };
        assert_eq!(
            decode_all(&[0; 9], &tight),
            Err(TlvError::TooLarge { size: 9, limit: 8 })
        );
        assert_eq!(
            decode_all(&[0x01, 0x00, 0x01, 0x00, 0x01, 0x00], &tight),
            Err(TlvError::TooManyElements {
                offset: 4,
                limit: 2
            })
        );
        let deep = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        assert_eq!(
            decode_all(&[0xE3, 0x04, 0xE3, 0x02, 0xE3, 0x00], &deep),
            Err(TlvError::TooDeep {
                offset: 4,
                limit: 2
            })
        );
        // Thousands of nested indefinite levels stop at the depth limit, not the stack.
        let mut nested = Vec::new();
        for _ in 0..10_000 {
            nested.extend_from_slice(&[0xE3, 0x80]);
        }
        assert!(matches!(
            decode_all(&nested, &Limits::default()),
            Err(TlvError::TooDeep { .. })
        ));
    }

    #[test]
    fn tree_roundtrip_known_answer() {
        let bytes = [
            0xE3, 0x0F, 0x4F, 0x08, 0xA0, 0, 0, 0, 0x03, 0, 0, 0, 0x9F, 0x70, 0x01, 0x0F, 0xC5,
            0x00,
        ];
        // E3 length 0x0F covers 4F(10) + 9F70(4) + C5(2) = 16: deliberately wrong by one.
        assert!(decode_all(&bytes, &Limits::default()).is_err());
        let mut fixed = bytes;
        fixed[1] = 0x10;
        let tree = decode_all(&fixed, &Limits::default()).unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].children().len(), 3);
        assert_eq!(tree[0].children()[1].tag, t(0x9F70));
        assert_eq!(encode_all(&tree), fixed);
        let indefinite = [0xE3, 0x80, 0x4F, 0x01, 0xAA, 0x00, 0x00, 0xC5, 0x01, 0x80];
        let tree = decode_all(&indefinite, &Limits::default()).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(encode_all(&tree), indefinite);
    }

    fn arb_tag(constructed: bool) -> impl Strategy<Value = Tag> {
        (1u8..=0x1E, 0u8..4)
            .prop_map(|(n, class)| (class << 6) | n)
            .prop_flat_map(move |first| {
                let first = if constructed {
                    first | 0x20
                } else {
                    first & !0x20
                };
                prop_oneof![
                    Just(Tag(u32::from(first))),
                    (0x1Fu8..=0x7F)
                        .prop_map(move |b| Tag(u32::from(first | 0x1F) << 8 | u32::from(b))),
                    (0x81u8..=0xFF, 0u8..=0x7F).prop_map(move |(b1, b2)| Tag(u32::from(
                        first | 0x1F
                    ) << 16
                        | u32::from(b1) << 8
                        | u32::from(b2))),
                ]
            })
    }

    fn arb_tlv() -> impl Strategy<Value = Tlv> {
        let leaf = (arb_tag(false), prop::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(tag, v)| Tlv::primitive(tag, v));
        leaf.prop_recursive(4, 64, 6, |inner| {
            (
                arb_tag(true),
                prop::collection::vec(inner, 0..6),
                any::<bool>(),
            )
                .prop_map(|(tag, children, indefinite)| Tlv {
                    tag,
                    value: TlvValue::Constructed {
                        children,
                        indefinite,
                    },
                })
        })
    }

    proptest! {
        #[test]
        fn decode_encode_roundtrip(tlvs in prop::collection::vec(arb_tlv(), 0..4)) {
            let bytes = encode_all(&tlvs);
            let back = decode_all(&bytes, &Limits::default()).unwrap();
            prop_assert_eq!(&back, &tlvs);
            prop_assert_eq!(encode_all(&back), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_reencode(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(tree) = decode_all(&bytes, &Limits::default()) {
                prop_assert_eq!(encode_all(&tree), bytes);
            }
        }

        #[test]
        fn tag_new_agrees_with_reader(v in any::<u32>()) {
            if let Ok(tag) = Tag::new(v) {
                let mut bytes = tag.to_bytes();
                bytes.push(0);
                let mut r = Reader::new(&bytes);
                prop_assert_eq!(r.read_header().unwrap().tag, tag);
            }
        }
    }
}
