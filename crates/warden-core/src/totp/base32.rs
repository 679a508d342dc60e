//! RFC 4648 base32 (the `A–Z2–7` alphabet), as TOTP secrets are written in key URIs and typed
//! into authenticator apps.
//!
//! Encoding never pads. Decoding is for secrets a person or another system hands us: it accepts
//! either letter case and trailing `=` padding, and ignores unused low bits in the last
//! character (RFC 4648 §3.5 lets a decoder do so; Python's `base64.b32decode` and oathtool do).
//! Errors say where the input went wrong, never what character was there: the input is a secret.

use zeroize::{Zeroize, Zeroizing};

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why text is not base32. Positions count characters from 0; the text itself is never shown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Base32Error {
    #[error("character {position} is not in the base32 alphabet (A-Z, 2-7)")]
    InvalidCharacter { position: usize },
    #[error("{chars} base32 characters cannot encode whole bytes (the length must not leave 1, 3 or 6 characters over a multiple of 8)")]
    InvalidLength { chars: usize },
}

/// Encodes bytes as unpadded upper-case base32.
pub fn encode(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(5) * 8));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    buffer.zeroize();
    out
}

/// Decodes base32 text (either case, optional trailing `=` padding) into bytes.
pub fn decode(text: &str) -> Result<Zeroizing<Vec<u8>>, Base32Error> {
    let unpadded = text.trim_end_matches('=');
    let mut values = Zeroizing::new(Vec::with_capacity(unpadded.len()));
    for (position, character) in unpadded.chars().enumerate() {
        let value = match character {
            'A'..='Z' => character as u8 - b'A',
            'a'..='z' => character as u8 - b'a',
            '2'..='7' => character as u8 - b'2' + 26,
            _ => return Err(Base32Error::InvalidCharacter { position }),
        };
        values.push(value);
    }
    let chars = values.len();
    if matches!(chars % 8, 1 | 3 | 6) {
        return Err(Base32Error::InvalidLength { chars });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(chars * 5 / 8));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &value in values.iter() {
        buffer = (buffer << 5) | u16::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            // Truncation to the low byte is the point: the high bits were emitted before.
            out.push((buffer >> bits) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    buffer.zeroize();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 4648 §10 test vectors, with the padding removed.
    const RFC4648: [(&str, &str); 7] = [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ];

    #[test]
    fn rfc4648_vectors_encode_and_decode() {
        for (plain, encoded) in RFC4648 {
            assert_eq!(
                encode(plain.as_bytes()).as_str(),
                encoded,
                "encode {plain:?}"
            );
            assert_eq!(decode(encoded).unwrap().as_slice(), plain.as_bytes());
        }
    }

    #[test]
    fn decoding_accepts_padding_and_lower_case() {
        assert_eq!(decode("MZXW6YQ=").unwrap().as_slice(), b"foob");
        assert_eq!(decode("mzxw6ytboi======").unwrap().as_slice(), b"foobar");
    }

    #[test]
    fn decoding_rejects_bad_characters_by_position_only() {
        assert_eq!(
            decode("MZX1").unwrap_err(),
            Base32Error::InvalidCharacter { position: 3 }
        );
        assert_eq!(
            decode("MZ W6").unwrap_err(),
            Base32Error::InvalidCharacter { position: 2 }
        );
        assert_eq!(
            decode("MZXW6YT\u{e9}").unwrap_err(),
            Base32Error::InvalidCharacter { position: 7 }
        );
        // Padding in the middle is not padding.
        assert_eq!(
            decode("MZ=W6").unwrap_err(),
            Base32Error::InvalidCharacter { position: 2 }
        );
    }

    #[test]
    fn decoding_rejects_impossible_lengths() {
        for len in [1, 3, 6, 9] {
            assert_eq!(
                decode(&"A".repeat(len)).unwrap_err(),
                Base32Error::InvalidLength { chars: len }
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let encoded = encode(&bytes);
            prop_assert!(!encoded.contains('='));
            let decoded = decode(&encoded).unwrap();
            prop_assert_eq!(decoded.as_slice(), bytes.as_slice());
        }

        #[test]
        fn decode_never_panics(text in ".{0,64}") {
            let _ = decode(&text);
        }
    }
}
