//! RFC 5425 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`, with `MSG-LEN = NONZERO-DIGIT *DIGIT`.
//!
//! [`encode_frame`] writes one frame. [`FrameDecoder`] reads frames incrementally from whatever
//! pieces the transport hands over (a frame may arrive split anywhere, several frames may arrive
//! in one read), holds at most one message of at most `max_len` bytes, and refuses a bad length
//! prefix (a non-digit, a leading zero, a missing length, a length above the maximum) with the
//! byte offset where the stream went wrong. After an error the stream cannot be resynchronised,
//! so the decoder keeps returning that error: the caller must drop the connection.

/// RFC 5425 section 4.3.1: every receiver MUST accept messages of this many octets.
pub const RFC5425_MUST_ACCEPT: usize = 2048;
/// RFC 5425 section 4.3.1: receivers SHOULD accept messages of this many octets.
pub const RFC5425_SHOULD_ACCEPT: usize = 8192;

/// Why a frame could not be written or read. Offsets count bytes from the start of the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    // Encoding: a caller error.
    #[error("an empty syslog message cannot be framed (MSG-LEN starts at 1)")]
    EmptyMessage,
    // Decoding: the peer sent something that is not RFC 5425 framing.
    #[error("byte {offset}: expected a digit or a space in MSG-LEN, found byte 0x{byte:02x}")]
    NotADigit { offset: u64, byte: u8 },
    #[error("byte {offset}: MSG-LEN starts with a zero")]
    LeadingZero { offset: u64 },
    #[error("byte {offset}: a space where MSG-LEN should start")]
    MissingLength { offset: u64 },
    #[error("byte {offset}: MSG-LEN is larger than the {max}-byte maximum")]
    TooLong { offset: u64, max: usize },
    // End of stream in the middle of a frame.
    #[error("the stream ended inside MSG-LEN")]
    EndInsideLength,
    #[error("the stream ended inside a message: {received} of {expected} bytes received")]
    EndInsideMessage { expected: usize, received: usize },
}

/// Appends one frame (`<len> <msg>`) for `msg` to `out`.
pub fn encode_frame(msg: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if msg.is_empty() {
        return Err(FrameError::EmptyMessage);
    }
    out.reserve(msg.len() + 8);
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
    Ok(())
}

#[derive(Debug)]
enum State {
    Length { value: usize, digits: usize },
    Body { expected: usize, buf: Vec<u8> },
    Failed(FrameError),
}

/// Incremental RFC 5425 decoder; see the module documentation.
#[derive(Debug)]
pub struct FrameDecoder {
    max_len: usize,
    offset: u64,
    state: State,
}

impl FrameDecoder {
    /// A decoder refusing messages longer than `max_len` bytes (at least
    /// [`RFC5425_MUST_ACCEPT`] is sensible; smaller values are allowed for tests).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            offset: 0,
            state: State::Length {
                value: 0,
                digits: 0,
            },
        }
    }

    /// Consumes bytes from the front of `input` until one message is complete (returned, with
    /// `input` advanced past it) or `input` is used up (`Ok(None)`). Call again while `input` is
    /// not empty.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            match &mut self.state {
                State::Failed(err) => return Err(err.clone()),
                State::Length { value, digits } => {
                    let Some((&byte, rest)) = input.split_first() else {
                        return Ok(None);
                    };
                    let offset = self.offset;
                    let step = match byte {
                        b' ' if *digits == 0 => Err(FrameError::MissingLength { offset }),
                        b' ' => Ok(None),
                        b'0' if *digits == 0 => Err(FrameError::LeadingZero { offset }),
                        b'0'..=b'9' => value
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                            .filter(|v| *v <= self.max_len)
                            .map(Some)
                            .ok_or(FrameError::TooLong {
                                offset,
                                max: self.max_len,
                            }),
                        _ => Err(FrameError::NotADigit { offset, byte }),
                    };
                    *input = rest;
                    self.offset += 1;
                    match step {
                        Err(err) => {
                            self.state = State::Failed(err.clone());
                            return Err(err);
                        }
                        Ok(Some(v)) => {
                            *value = v;
                            *digits += 1;
                        }
                        Ok(None) => {
                            let expected = *value;
                            self.state = State::Body {
                                expected,
                                buf: Vec::with_capacity(expected),
                            };
                        }
                    }
                }
                State::Body { expected, buf } => {
                    let take = (*expected - buf.len()).min(input.len());
                    buf.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    self.offset += take as u64;
                    if buf.len() < *expected {
                        return Ok(None);
                    }
                    let msg = std::mem::take(buf);
                    self.state = State::Length {
                        value: 0,
                        digits: 0,
                    };
                    return Ok(Some(msg));
                }
            }
        }
    }

    /// Decodes every complete message in `input`, appending them to `out`.
    pub fn decode_all(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FrameError> {
        while !input.is_empty() {
            match self.decode(&mut input)? {
                Some(msg) => out.push(msg),
                None => break,
            }
        }
        Ok(())
    }

    /// True when the bytes so far end exactly at a frame boundary.
    pub fn is_between_frames(&self) -> bool {
        matches!(self.state, State::Length { digits: 0, .. })
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Call at end of stream: an error if the stream stopped inside a frame or had failed.
    pub fn finish(&self) -> Result<(), FrameError> {
        match &self.state {
            State::Failed(err) => Err(err.clone()),
            State::Length { digits: 0, .. } => Ok(()),
            State::Length { .. } => Err(FrameError::EndInsideLength),
            State::Body { expected, buf } => Err(FrameError::EndInsideMessage {
                expected: *expected,
                received: buf.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_whole(max: usize, input: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut dec = FrameDecoder::new(max);
        let mut out = Vec::new();
        dec.decode_all(input, &mut out)?;
        dec.finish()?;
        Ok(out)
    }

    #[test]
    fn encodes_known_answer() {
        let mut out = Vec::new();
        encode_frame(b"<13>1 - - - - - -", &mut out).unwrap();
        encode_frame(b"x", &mut out).unwrap();
        assert_eq!(out, b"17 <13>1 - - - - - -1 x");
        assert_eq!(encode_frame(b"", &mut out), Err(FrameError::EmptyMessage));
    }

    #[test]
    fn decodes_frames_and_binary_bodies() {
        let got = decode_whole(100, b"3 a b5 \n\0 ]\xff10 0123456789").unwrap();
        assert_eq!(
            got,
            vec![
                b"a b".to_vec(),
                b"\n\0 ]\xff".to_vec(),
                b"0123456789".to_vec()
            ]
        );
        assert_eq!(decode_whole(100, b""), Ok(vec![]));
    }

    #[test]
    fn refuses_malformed_lengths() {
        let cases: &[(&[u8], FrameError)] = &[
            (
                b"x",
                FrameError::NotADigit {
                    offset: 0,
                    byte: b'x',
                },
            ),
            (
                b"3 abc1x",
                FrameError::NotADigit {
                    offset: 6,
                    byte: b'x',
                },
            ),
            (
                b"-1 a",
                FrameError::NotADigit {
                    offset: 0,
                    byte: b'-',
                },
            ),
            (
                b"+1 a",
                FrameError::NotADigit {
                    offset: 0,
                    byte: b'+',
                },
            ),
            (
                b"1\ta",
                FrameError::NotADigit {
                    offset: 1,
                    byte: b'\t',
                },
            ),
            (b"0 ", FrameError::LeadingZero { offset: 0 }),
            (b"01 a", FrameError::LeadingZero { offset: 0 }),
            (b" 1 a", FrameError::MissingLength { offset: 0 }),
            (
                b"101 ",
                FrameError::TooLong {
                    offset: 2,
                    max: 100,
                },
            ),
            (
                b"99999999999999999999999999 a",
                FrameError::TooLong {
                    offset: 2,
                    max: 100,
                },
            ),
            (b"12", FrameError::EndInsideLength),
            (
                b"5 abc",
                FrameError::EndInsideMessage {
                    expected: 5,
                    received: 3,
                },
            ),
            (
                b"5 ",
                FrameError::EndInsideMessage {
                    expected: 5,
                    received: 0,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_whole(100, input).as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn max_length_is_inclusive_and_overflow_safe() {
        let mut frame = Vec::new();
        encode_frame(&[b'a'; 100], &mut frame).unwrap();
        assert!(decode_whole(100, &frame).is_ok());
        assert!(decode_whole(99, &frame).is_err());
        // A length near usize::MAX must not overflow.
        let huge = format!("{}0 x", usize::MAX);
        assert!(matches!(
            decode_whole(usize::MAX, huge.as_bytes()),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn stays_failed_after_an_error() {
        let mut dec = FrameDecoder::new(10);
        let mut input: &[u8] = b"x";
        let err = dec.decode(&mut input).unwrap_err();
        let mut more: &[u8] = b"1 a";
        assert_eq!(dec.decode(&mut more), Err(err.clone()));
        assert_eq!(dec.finish(), Err(err));
    }

    fn split_points(len: usize, cuts: &[usize]) -> Vec<usize> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.push(0);
        points.push(len);
        points.sort_unstable();
        points
    }

    proptest! {
        #[test]
        fn round_trip_over_random_splits(
            msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..12),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                encode_frame(m, &mut stream).unwrap();
            }
            let points = split_points(stream.len(), &cuts);
            let mut dec = FrameDecoder::new(RFC5425_SHOULD_ACCEPT);
            let mut got = Vec::new();
            for w in points.windows(2) {
                dec.decode_all(&stream[w[0]..w[1]], &mut got).unwrap();
            }
            dec.finish().unwrap();
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(dec.offset(), stream.len() as u64);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_splits_do_not_matter(
            input in prop::collection::vec(any::<u8>(), 0..200),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
            max in 0usize..64,
        ) {
            let whole = decode_whole(max, &input);
            let points = split_points(input.len(), &cuts);
            let mut dec = FrameDecoder::new(max);
            let mut got = Vec::new();
            let mut result = Ok(());
            for w in points.windows(2) {
                result = dec.decode_all(&input[w[0]..w[1]], &mut got);
                if result.is_err() {
                    break;
                }
            }
            let split = result.and_then(|()| dec.finish()).map(|()| got);
            prop_assert_eq!(split, whole);
        }
    }
}
