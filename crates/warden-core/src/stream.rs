//! Sealed streams: segmented AES-256-GCM for recordings and large files (STREAM construction).
//!
//! A sealed stream is a fixed header followed by frames. Each frame carries one segment of at most
//! `segment_size` plaintext bytes, encrypted under a per-file random data key with nonce
//! `nonce_prefix ‖ counter ‖ last-flag` and the whole header as associated data. The data key is
//! wrapped (AES-256-GCM) under a purpose key. Memory use is one segment, whatever the file size;
//! every segment is authenticated before its plaintext is released; a missing final segment
//! (power loss, truncation) is told apart from modification, reordering, duplication and
//! splicing. The byte-level format is specified in `docs/formats/sealed-stream.md`.
//!
//! Implements: V15, V16, V17, V18, V22, V62

use std::io::{self, BufRead, Read, Write};

use openssl::symm::{Cipher, Crypter, Mode};

use crate::keyring::Purpose;
use crate::secret::Key32;

pub const MAGIC: [u8; 8] = *b"WRDNSEAL";
/// Version 1: every segment authenticates the whole header, key wrap included.
pub const VERSION_1: u8 = 1;
/// Version 2 (written since key slots): segments authenticate the header without its key id
/// and key wrap, so a key rotation can re-wrap the data key in place (`rewrap_header`).
pub const VERSION_2: u8 = 2;
/// The version new streams are written in.
pub const VERSION: u8 = VERSION_2;
/// AES-256-GCM segments, AES-256-GCM key wrap.
pub const ALGORITHM_AES256GCM: u8 = 1;
pub const HEADER_LEN: usize = 107;
/// Marker (4) ‖ kind (1) ‖ plaintext length (4).
pub const FRAME_HEADER_LEN: usize = 9;
pub const TAG_LEN: usize = 16;
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
pub const MIN_SEGMENT_SIZE: u32 = 1024;
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;
/// How far back from a failing segment's position to look for the segment it duplicates.
const SEARCH_BEHIND: u64 = 1024;
/// How far ahead to look for the segment a reordered or removed-before position holds.
const SEARCH_AHEAD: u64 = 64;

const KIND_MORE: u8 = 0;
const KIND_FINAL: u8 = 1;
const KEY_ID_LABEL: &[u8] = b"warden sealed-stream key id v1";
/// Counters are 32-bit in the nonce: at most 2^32 segments (256 TiB at 64 KiB).
const MAX_SEGMENTS: u64 = 1 << 32;

/// Why a sealed stream could not be written or read. Positions count segments from 0.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("I/O error")]
    Io(#[from] io::Error),
    #[error("not a warden sealed stream (bad magic)")]
    NotSealed,
    #[error("sealed stream version {0} is not supported (this warden reads versions 1 and 2)")]
    UnsupportedVersion(u8),
    #[error("a version-1 stream authenticates its key wrap in every segment: it cannot be re-wrapped, only re-encrypted")]
    CannotRewrap,
    #[error("bad header: {0}")]
    BadHeader(&'static str),
    #[error("wrong key: this file was sealed with a different {0} key")]
    WrongKey(Purpose),
    #[error("wrong key: this file was sealed with the {sealed_with} key, not the {given} key")]
    WrongPurpose {
        sealed_with: Purpose,
        given: Purpose,
    },
    #[error("segment {segment} was modified (authentication failed)")]
    SegmentModified { segment: u64 },
    #[error("segment {segment} comes from another sealed file (spliced)")]
    SegmentFromOtherFile { segment: u64 },
    #[error("segments out of order: position {position} holds segment {found} (reordered, or segments removed)")]
    SegmentReordered { position: u64, found: u64 },
    #[error("segment {copy_of} appears again at position {position} (duplicated)")]
    SegmentDuplicated { position: u64, copy_of: u64 },
    #[error("bad frame at segment {segment}: {reason}")]
    BadFrame { segment: u64, reason: &'static str },
    #[error("truncated: the final segment is missing; {segments} segments ({plaintext_bytes} bytes) verified before the end of the file")]
    Truncated { segments: u64, plaintext_bytes: u64 },
    #[error("unexpected data after the final segment ({bytes} B)")]
    TrailingData { bytes: u64 },
    #[error("stream too long: more than 2^32 segments")]
    TooManySegments,
    #[error("segment size {0} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}")]
    BadSegmentSize(u32),
    #[error("AES-256-GCM failed in the crypto library")]
    Crypto,
}

impl StreamError {
    /// True for damage to the content (as opposed to I/O, key or usage errors).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::BadHeader(_)
                | Self::SegmentModified { .. }
                | Self::SegmentFromOtherFile { .. }
                | Self::SegmentReordered { .. }
                | Self::SegmentDuplicated { .. }
                | Self::BadFrame { .. }
                | Self::Truncated { .. }
                | Self::TrailingData { .. }
        )
    }
}

impl From<openssl::error::ErrorStack> for StreamError {
    fn from(_: openssl::error::ErrorStack) -> Self {
        Self::Crypto
    }
}

/// The label of the session-recordings key.
pub const SESSION_KEY_LABEL: &[u8] = b"warden shim session recordings v1";

/// The key session recordings are sealed under: `HMAC-SHA256(K_recordings, SESSION_KEY_LABEL)`,
/// so that vault operations (under the `recordings` key itself) cannot open or forge them.
pub fn session_recordings_key(recordings: &Key32) -> Key32 {
    Key32::from_bytes(crate::mac::hmac_sha256(
        recordings.expose_secret(),
        SESSION_KEY_LABEL,
    ))
}

/// The key id a header names for a purpose key (`HMAC-SHA256(K, label)[0..8]`).
pub fn key_id(key: &Key32) -> [u8; 8] {
    let mac = crate::mac::hmac_sha256(key.expose_secret(), KEY_ID_LABEL);
    mac[..8].try_into().expect("8 <= 32")
}

/// The associated data of every segment: version 1, the whole header; version 2, the header
/// without its key id (bytes 32..40) and key wrap (47..107).
fn segment_aad(bytes: &[u8; HEADER_LEN]) -> Vec<u8> {
    if bytes[8] == VERSION_1 {
        bytes.to_vec()
    } else {
        [&bytes[0..32], &bytes[40..47]].concat()
    }
}

/// The version and key id of a header, read without any key (to pick which version of a
/// purpose key opens it, during a rotation). `None` when it is not a sealed stream header.
pub fn peek_header(bytes: &[u8]) -> Option<(u8, [u8; 8])> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return None;
    }
    Some((bytes[8], bytes[32..40].try_into().expect("8 bytes")))
}

/// Re-wraps a version-2 header's data key from `old` to `new` (a key rotation): a new key id,
/// a fresh wrap nonce, the data key wrapped under `new`. The segments stay valid, because
/// they do not authenticate the wrap. Version 1 cannot be re-wrapped ([`StreamError::CannotRewrap`]).
pub fn rewrap_header(
    bytes: &[u8],
    purpose: Purpose,
    old: &Key32,
    new: &Key32,
) -> Result<[u8; HEADER_LEN], StreamError> {
    let (header, data_key) = open_header(bytes, purpose, old)?;
    if header.bytes[8] != VERSION_2 {
        return Err(StreamError::CannotRewrap);
    }
    let mut out = header.bytes;
    out[32..40].copy_from_slice(&key_id(new));
    let wrap_nonce: [u8; 12] = crate::rand::array();
    out[47..59].copy_from_slice(&wrap_nonce);
    let mut wrapped = Vec::with_capacity(48);
    let mut wrap_tag = [0u8; TAG_LEN];
    gcm(
        Mode::Encrypt,
        new.expose_secret(),
        &wrap_nonce,
        &out[0..47],
        data_key.expose_secret(),
        &mut wrapped,
        &mut wrap_tag,
    )?;
    out[59..91].copy_from_slice(&wrapped);
    out[91..107].copy_from_slice(&wrap_tag);
    Ok(out)
}

/// The parsed, authenticated header of a sealed stream.
#[derive(Clone, Debug)]
pub struct Header {
    pub purpose: Purpose,
    pub segment_size: u32,
    pub file_id: [u8; 16],
    nonce_prefix: [u8; 7],
    bytes: [u8; HEADER_LEN],
    /// What every segment authenticates ([`segment_aad`]).
    aad: Vec<u8>,
}

impl Header {
    /// The format version (1 or 2).
    pub fn version(&self) -> u8 {
        self.bytes[8]
    }

    /// The header bytes as written (the associated data of every segment).
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    fn marker(&self) -> [u8; 4] {
        self.file_id[..4].try_into().expect("4 <= 16")
    }

    fn nonce(&self, counter: u64, kind: u8) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&self.nonce_prefix);
        nonce[7..11].copy_from_slice(&(counter as u32).to_be_bytes());
        nonce[11] = kind;
        nonce
    }
}

/// AES-256-GCM in one call: `out` receives the ciphertext (or plaintext), returns the tag on encrypt.
fn gcm(
    mode: Mode,
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    input: &[u8],
    out: &mut Vec<u8>,
    tag: &mut [u8; TAG_LEN],
) -> Result<(), openssl::error::ErrorStack> {
    let decrypting = matches!(mode, Mode::Decrypt);
    let mut crypter = Crypter::new(Cipher::aes_256_gcm(), mode, key, Some(nonce))?;
    crypter.pad(false);
    crypter.aad_update(aad)?;
    // OpenSSL's wrapper wants room for one extra block. Only grow (and zero-fill) the buffer
    // when it is too short: a reused buffer costs no memset per segment.
    if out.len() < input.len() + 16 {
        out.resize(input.len() + 16, 0);
    }
    let mut written = crypter.update(input, out)?;
    if decrypting {
        crypter.set_tag(tag)?;
    }
    written += crypter.finalize(&mut out[written..])?;
    out.truncate(written);
    if !decrypting {
        crypter.get_tag(tag)?;
    }
    Ok(())
}

/// AES-256-GCM for one stream's segments: the context and key schedule are set up once per
/// stream; each segment only sets its nonce (what `openssl speed` does too).
struct SegmentCipher {
    ctx: openssl::cipher_ctx::CipherCtx,
}

impl SegmentCipher {
    fn new(data_key: &Key32, encrypt: bool) -> Result<Self, openssl::error::ErrorStack> {
        let mut ctx = openssl::cipher_ctx::CipherCtx::new()?;
        let cipher = openssl::cipher::Cipher::aes_256_gcm();
        if encrypt {
            ctx.encrypt_init(Some(cipher), Some(data_key.expose_secret()), None)?;
        } else {
            ctx.decrypt_init(Some(cipher), Some(data_key.expose_secret()), None)?;
        }
        ctx.set_padding(false);
        Ok(Self { ctx })
    }

    /// Encrypts `input` into `out` (at least `input.len() + 16` long); returns the ciphertext
    /// length and writes the tag.
    fn seal(
        &mut self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
        tag: &mut [u8],
    ) -> Result<usize, openssl::error::ErrorStack> {
        self.ctx.encrypt_init(None, None, Some(nonce))?;
        self.ctx.cipher_update(aad, None)?;
        let n = self.ctx.cipher_update(input, Some(out))?;
        let m = self.ctx.cipher_final(&mut out[n..])?;
        self.ctx.tag(tag)?;
        Ok(n + m)
    }

    /// Decrypts and authenticates; `out` must be at least `input.len() + 16` long.
    fn open(
        &mut self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<usize, openssl::error::ErrorStack> {
        self.ctx.decrypt_init(None, None, Some(nonce))?;
        self.ctx.set_tag(tag)?;
        self.ctx.cipher_update(aad, None)?;
        let n = self.ctx.cipher_update(input, Some(out))?;
        let m = self.ctx.cipher_final(&mut out[n..])?;
        Ok(n + m)
    }
}

/// Seals one segment into `out` as a complete frame (marker, kind, length, ciphertext, tag);
/// returns the frame's length. `out` must hold the frame plus one byte (OpenSSL's wrapper wants
/// room for one more block).
fn seal_frame(
    header: &Header,
    cipher: &mut SegmentCipher,
    counter: u64,
    kind: u8,
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize, StreamError> {
    let len = plaintext.len();
    out[..4].copy_from_slice(&header.marker());
    out[4] = kind;
    out[5..9].copy_from_slice(&(len as u32).to_be_bytes());
    let nonce = header.nonce(counter, kind);
    let (body, rest) = out[FRAME_HEADER_LEN..].split_at_mut(len + TAG_LEN);
    let _ = rest;
    let mut tag = [0u8; TAG_LEN];
    // The body slot holds the ciphertext and then the tag; OpenSSL writes at most `len` bytes.
    let written = cipher.seal(&nonce, &header.aad, plaintext, body, &mut tag)?;
    debug_assert_eq!(written, len, "GCM output is as long as its input");
    body[len..len + TAG_LEN].copy_from_slice(&tag);
    Ok(FRAME_HEADER_LEN + len + TAG_LEN)
}

/// Where a [`SealedWriter`] puts the stream's bytes. Every [`Write`] is one: each frame is
/// sealed into the writer's reused scratch buffer and written with one call. A sink that owns
/// its buffers implements this directly and has frames sealed straight into them, saving a copy
/// of every byte.
pub trait FrameSink {
    /// Appends at most `max_len` bytes, produced by `fill` into the slice it is given (exactly
    /// `max_len` long); `fill` returns how many it produced. `scratch` is the writer's buffer,
    /// for sinks that need one.
    fn put_frame(
        &mut self,
        max_len: usize,
        scratch: &mut Vec<u8>,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, StreamError>,
    ) -> Result<(), StreamError>;

    /// Pushes everything appended so far towards its destination.
    fn flush_frames(&mut self) -> io::Result<()>;
}

impl<W: Write> FrameSink for W {
    fn put_frame(
        &mut self,
        max_len: usize,
        scratch: &mut Vec<u8>,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, StreamError>,
    ) -> Result<(), StreamError> {
        // The scratch buffer only grows: no zero-fill per frame.
        if scratch.len() < max_len {
            scratch.resize(max_len, 0);
        }
        let len = fill(&mut scratch[..max_len])?;
        self.write_all(&scratch[..len])?;
        Ok(())
    }

    fn flush_frames(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Writes a sealed stream. `finish` consumes the writer and writes the final segment, so a
/// stream cannot be finished twice or written to afterwards.
pub struct SealedWriter<W: FrameSink> {
    inner: W,
    header: Header,
    cipher: SegmentCipher,
    segment_size: usize,
    buffer: Vec<u8>,
    scratch: Vec<u8>,
    counter: u64,
    plaintext_bytes: u64,
}

impl<W: FrameSink> SealedWriter<W> {
    /// Starts a stream: draws a fresh data key, wraps it under `purpose_key`, writes the header.
    pub fn new(
        inner: W,
        purpose: Purpose,
        purpose_key: &Key32,
        segment_size: u32,
    ) -> Result<Self, StreamError> {
        Self::with_version(inner, purpose, purpose_key, segment_size, VERSION)
    }

    /// [`SealedWriter::new`] in a given format version (1 only for tests of files made before
    /// version 2).
    #[doc(hidden)]
    pub fn with_version(
        mut inner: W,
        purpose: Purpose,
        purpose_key: &Key32,
        segment_size: u32,
        version: u8,
    ) -> Result<Self, StreamError> {
        if version != VERSION_1 && version != VERSION_2 {
            return Err(StreamError::UnsupportedVersion(version));
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(StreamError::BadSegmentSize(segment_size));
        }
        let data_key = Key32::random();
        let file_id: [u8; 16] = crate::rand::array();
        let nonce_prefix: [u8; 7] = crate::rand::array();
        let wrap_nonce: [u8; 12] = crate::rand::array();

        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..8].copy_from_slice(&MAGIC);
        bytes[8] = version;
        bytes[9] = ALGORITHM_AES256GCM;
        bytes[10] = purpose.code();
        bytes[11] = 0;
        bytes[12..16].copy_from_slice(&segment_size.to_be_bytes());
        bytes[16..32].copy_from_slice(&file_id);
        bytes[32..40].copy_from_slice(&key_id(purpose_key));
        bytes[40..47].copy_from_slice(&nonce_prefix);
        bytes[47..59].copy_from_slice(&wrap_nonce);
        let mut wrapped = Vec::with_capacity(48);
        let mut wrap_tag = [0u8; TAG_LEN];
        gcm(
            Mode::Encrypt,
            purpose_key.expose_secret(),
            &wrap_nonce,
            &bytes[0..47],
            data_key.expose_secret(),
            &mut wrapped,
            &mut wrap_tag,
        )?;
        bytes[59..91].copy_from_slice(&wrapped);
        bytes[91..107].copy_from_slice(&wrap_tag);
        let mut scratch = Vec::new();
        inner.put_frame(HEADER_LEN, &mut scratch, &mut |slot| {
            slot.copy_from_slice(&bytes);
            Ok(HEADER_LEN)
        })?;

        let segment_size = segment_size as usize;
        let cipher = SegmentCipher::new(&data_key, true)?;
        Ok(Self {
            inner,
            header: Header {
                purpose,
                segment_size: segment_size as u32,
                file_id,
                nonce_prefix,
                aad: segment_aad(&bytes),
                bytes,
            },
            cipher,
            segment_size,
            buffer: Vec::with_capacity(segment_size),
            scratch,
            counter: 0,
            plaintext_bytes: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Plaintext bytes accepted so far (sealed or buffered).
    pub fn plaintext_bytes(&self) -> u64 {
        self.plaintext_bytes
    }

    /// Segments written so far.
    pub fn segments_written(&self) -> u64 {
        self.counter
    }

    fn emit(&mut self, plaintext: Option<&[u8]>, kind: u8) -> Result<(), StreamError> {
        if self.counter >= MAX_SEGMENTS {
            return Err(StreamError::TooManySegments);
        }
        let plaintext = plaintext.unwrap_or(&self.buffer);
        // The whole frame — header, ciphertext, tag — is sealed into one slot of the sink (or
        // the reused scratch buffer) and handed over at once. OpenSSL wants one spare byte.
        let slot_len = FRAME_HEADER_LEN + plaintext.len() + TAG_LEN + 1;
        let (header, cipher, counter) = (&self.header, &mut self.cipher, self.counter);
        self.inner
            .put_frame(slot_len, &mut self.scratch, &mut |slot| {
                seal_frame(header, cipher, counter, kind, plaintext, slot)
            })?;
        self.counter += 1;
        Ok(())
    }

    /// Seals whatever is buffered as a (short) non-final segment and flushes the inner writer,
    /// so everything written so far survives a crash. Does nothing when the buffer is empty.
    pub fn seal_segment(&mut self) -> Result<(), StreamError> {
        if !self.buffer.is_empty() {
            self.emit(None, KIND_MORE)?;
            self.buffer.clear();
        }
        self.inner.flush_frames()?;
        Ok(())
    }

    /// Appends plaintext, sealing full segments as they fill.
    pub fn write_plaintext(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        self.plaintext_bytes += data.len() as u64;
        while !data.is_empty() {
            if self.buffer.is_empty() && data.len() > self.segment_size {
                // Whole segments straight from the caller's slice, without a copy. Strictly more
                // than one segment remains, so this is never the last one.
                let (segment, rest) = data.split_at(self.segment_size);
                self.emit(Some(segment), KIND_MORE)?;
                data = rest;
                continue;
            }
            let room = self.segment_size - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == self.segment_size && !data.is_empty() {
                self.emit(None, KIND_MORE)?;
                self.buffer.clear();
            }
        }
        Ok(())
    }

    /// Abandons the stream without a final segment (after a failure) and returns the inner
    /// writer. Buffered plaintext is dropped; readers report the stream as truncated after the
    /// last sealed segment.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes the final segment (whatever is buffered, possibly nothing), flushes, and returns the
    /// inner writer with a summary of what was sealed.
    pub fn finish(mut self) -> Result<(W, StreamSummary), StreamError> {
        self.emit(None, KIND_FINAL)?;
        self.buffer.clear();
        self.inner.flush_frames()?;
        let summary = StreamSummary {
            segments: self.counter,
            plaintext_bytes: self.plaintext_bytes,
            file_id: self.header.file_id,
        };
        Ok((self.inner, summary))
    }
}

impl<W: FrameSink> Write for SealedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_plaintext(buf).map_err(into_io)?;
        Ok(buf.len())
    }

    /// Flushes the inner writer only; use [`SealedWriter::seal_segment`] to make buffered
    /// plaintext durable.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush_frames()
    }
}

fn into_io(err: StreamError) -> io::Error {
    match err {
        StreamError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// What the next call to [`SealedReader::next_segment`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// A verified segment; more follow.
    More,
    /// The verified final segment; the stream is complete and nothing follows it.
    Final,
}

/// Reads and verifies a sealed stream segment by segment.
pub struct SealedReader<R: Read> {
    inner: R,
    header: Header,
    /// Kept for diagnosing a failed segment (trial decryption at other positions).
    data_key: Key32,
    cipher: SegmentCipher,
    frame: Vec<u8>,
    position: u64,
    plaintext_bytes: u64,
    /// Input bytes up to the end of the last verified frame (header included).
    verified_input_bytes: u64,
    finished: bool,
    /// Plaintext of the current segment not yet handed out through `Read`.
    pending: Vec<u8>,
    pending_pos: usize,
}

/// Reads as many bytes as possible into `buf`; returns how many (less than `buf.len()` only at EOF).
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The data key of a header, if `purpose_key` opens its key wrap (bytes 0..47 authenticated).
fn unwrap_data_key(bytes: &[u8; HEADER_LEN], purpose_key: &Key32) -> Option<Key32> {
    let wrap_nonce: [u8; 12] = bytes[47..59].try_into().expect("12 bytes");
    let mut wrap_tag: [u8; TAG_LEN] = bytes[91..107].try_into().expect("16 bytes");
    let mut data_key = zeroize::Zeroizing::new(Vec::with_capacity(48));
    gcm(
        Mode::Decrypt,
        purpose_key.expose_secret(),
        &wrap_nonce,
        &bytes[0..47],
        &bytes[59..91],
        &mut data_key,
        &mut wrap_tag,
    )
    .ok()?;
    Key32::from_slice(&data_key)
}

/// Parses the header and unwraps the data key. Separated from the reader so `verify` and tools
/// can report on headers alone.
pub fn open_header(
    bytes: &[u8],
    purpose: Purpose,
    purpose_key: &Key32,
) -> Result<(Header, Key32), StreamError> {
    if bytes.len() < MAGIC.len() || bytes[..8] != MAGIC {
        return Err(StreamError::NotSealed);
    }
    if bytes.len() < HEADER_LEN {
        return Err(StreamError::BadHeader("the header is cut short"));
    }
    let bytes: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().expect("length checked");
    if bytes[8] != VERSION_1 && bytes[8] != VERSION_2 {
        return Err(StreamError::UnsupportedVersion(bytes[8]));
    }
    if bytes[9] != ALGORITHM_AES256GCM {
        return Err(StreamError::BadHeader("unknown algorithm"));
    }
    let sealed_with =
        Purpose::from_code(bytes[10]).ok_or(StreamError::BadHeader("unknown key purpose"))?;
    if bytes[11] != 0 {
        return Err(StreamError::BadHeader("reserved byte is not zero"));
    }
    let segment_size = u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
        return Err(StreamError::BadHeader("segment size out of range"));
    }
    let id = key_id(purpose_key);
    let data_key = match unwrap_data_key(&bytes, purpose_key) {
        Some(data_key) if sealed_with == purpose => data_key,
        // Another purpose or key named: the file's, unless the header opens with this key once
        // its purpose and key id are this key's — then one of those bytes was changed.
        _ if sealed_with != purpose || !crate::mac::ct_eq(&bytes[32..40], &id) => {
            let mut as_ours = bytes;
            as_ours[10] = purpose.code();
            as_ours[32..40].copy_from_slice(&id);
            if unwrap_data_key(&as_ours, purpose_key).is_some() {
                return Err(StreamError::BadHeader(
                    "the key purpose or key id was modified (the header opens with this key)",
                ));
            }
            return Err(if sealed_with == purpose {
                StreamError::WrongKey(purpose)
            } else {
                StreamError::WrongPurpose {
                    sealed_with,
                    given: purpose,
                }
            });
        }
        _ => {
            return Err(StreamError::BadHeader(
                "header authentication failed (modified)",
            ))
        }
    };
    let header = Header {
        purpose: sealed_with,
        segment_size,
        file_id: bytes[16..32].try_into().expect("16 bytes"),
        nonce_prefix: bytes[40..47].try_into().expect("7 bytes"),
        aad: segment_aad(&bytes),
        bytes,
    };
    Ok((header, data_key))
}

impl<R: Read> SealedReader<R> {
    /// Reads the header and opens it with whichever of `keys` its key id names (the current
    /// and the next version of a purpose key, during a rotation); the first key otherwise, so
    /// a wrong key is reported as such.
    pub fn with_keys(mut inner: R, purpose: Purpose, keys: &[Key32]) -> Result<Self, StreamError> {
        let mut bytes = [0u8; HEADER_LEN];
        let got = read_full(&mut inner, &mut bytes)?;
        let named = peek_header(&bytes[..got]).map(|(_, id)| id);
        let key = keys
            .iter()
            .find(|k| named.is_some_and(|id| crate::mac::ct_eq(&id, &key_id(k))))
            .or(keys.first())
            .ok_or(StreamError::WrongKey(purpose))?;
        Self::from_header(inner, &bytes[..got], purpose, key)
    }

    /// Reads the header, checks the key and unwraps the data key.
    pub fn new(mut inner: R, purpose: Purpose, purpose_key: &Key32) -> Result<Self, StreamError> {
        let mut bytes = [0u8; HEADER_LEN];
        let got = read_full(&mut inner, &mut bytes)?;
        Self::from_header(inner, &bytes[..got], purpose, purpose_key)
    }

    fn from_header(
        inner: R,
        bytes: &[u8],
        purpose: Purpose,
        purpose_key: &Key32,
    ) -> Result<Self, StreamError> {
        let (header, data_key) = open_header(bytes, purpose, purpose_key)?;
        let capacity = header.segment_size as usize + FRAME_HEADER_LEN + TAG_LEN;
        Ok(Self {
            inner,
            header,
            cipher: SegmentCipher::new(&data_key, false)?,
            data_key,
            frame: Vec::with_capacity(capacity),
            position: 0,
            plaintext_bytes: 0,
            verified_input_bytes: HEADER_LEN as u64,
            finished: false,
            pending: Vec::new(),
            pending_pos: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Segments verified so far.
    pub fn segments_verified(&self) -> u64 {
        self.position
    }

    /// Plaintext bytes verified so far.
    pub fn plaintext_bytes(&self) -> u64 {
        self.plaintext_bytes
    }

    /// Input bytes covered by verification so far (header and verified frames).
    /// The source, positioned wherever reading stopped (e.g. to hash what follows).
    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn verified_input_bytes(&self) -> u64 {
        self.verified_input_bytes
    }

    fn truncated(&self) -> StreamError {
        StreamError::Truncated {
            segments: self.position,
            plaintext_bytes: self.plaintext_bytes,
        }
    }

    /// Verifies the next segment and puts its plaintext in `out` (replacing its content).
    /// After [`Segment::Final`] the stream has been checked for trailing bytes; calling again
    /// returns `Final` with an empty `out`.
    pub fn next_segment(&mut self, out: &mut Vec<u8>) -> Result<Segment, StreamError> {
        let result = self.read_segment(out);
        if result.is_err() {
            // Nothing unverified (or stale) is ever left in `out`.
            out.clear();
        }
        result
    }

    /// `out` is reused as is (no clearing, so no zero-fill per segment) and truncated to the
    /// plaintext on success.
    fn read_segment(&mut self, out: &mut Vec<u8>) -> Result<Segment, StreamError> {
        if self.finished {
            out.clear();
            return Ok(Segment::Final);
        }
        let mut frame_header = [0u8; FRAME_HEADER_LEN];
        let got = read_full(&mut self.inner, &mut frame_header)?;
        if got < FRAME_HEADER_LEN {
            return Err(self.truncated());
        }
        let segment = self.position;
        if frame_header[..4] != self.header.marker() {
            return Err(StreamError::SegmentFromOtherFile { segment });
        }
        let kind = frame_header[4];
        if kind != KIND_MORE && kind != KIND_FINAL {
            return Err(StreamError::BadFrame {
                segment,
                reason: "unknown segment kind",
            });
        }
        let len = u32::from_be_bytes(frame_header[5..9].try_into().expect("4 bytes")) as usize;
        if len > self.header.segment_size as usize {
            return Err(StreamError::BadFrame {
                segment,
                reason: "segment longer than the header's segment size",
            });
        }
        if segment >= MAX_SEGMENTS {
            return Err(StreamError::TooManySegments);
        }
        // Buffers only grow: no zero-fill per segment.
        if self.frame.len() < len + TAG_LEN {
            self.frame.resize(len + TAG_LEN, 0);
        }
        if read_full(&mut self.inner, &mut self.frame[..len + TAG_LEN])? < len + TAG_LEN {
            return Err(self.truncated());
        }
        if out.len() < len + 16 {
            out.resize(len + 16, 0);
        }
        let (ciphertext, tag) = self.frame[..len + TAG_LEN].split_at(len);
        let nonce = self.header.nonce(segment, kind);
        match self
            .cipher
            .open(&nonce, &self.header.aad, ciphertext, tag, out)
        {
            Ok(n) => out.truncate(n),
            Err(_) => {
                out.clear();
                let mut tag: [u8; TAG_LEN] = tag.try_into().expect("16 bytes");
                return Err(self.diagnose(segment, kind, len, &mut tag));
            }
        }
        if kind == KIND_FINAL {
            let mut probe = [0u8; 4096];
            let mut trailing = 0u64;
            loop {
                let n = read_full(&mut self.inner, &mut probe)?;
                trailing += n as u64;
                if n < probe.len() {
                    break;
                }
            }
            if trailing > 0 {
                out.clear();
                return Err(StreamError::TrailingData { bytes: trailing });
            }
        }
        // Counted only when handed over: a final segment refused for trailing data is not
        // "verified" plaintext anyone received (found by the sealed_stream fuzz body).
        self.position += 1;
        self.plaintext_bytes += out.len() as u64;
        self.verified_input_bytes += (FRAME_HEADER_LEN + len + TAG_LEN) as u64;
        if kind == KIND_FINAL {
            self.finished = true;
            return Ok(Segment::Final);
        }
        Ok(Segment::More)
    }

    /// A segment failed authentication at `position`: find out whether it is another segment
    /// of this same file (reordered, duplicated) or damaged.
    fn diagnose(
        &self,
        position: u64,
        kind: u8,
        len: usize,
        tag: &mut [u8; TAG_LEN],
    ) -> StreamError {
        let ciphertext = &self.frame[..len];
        let mut scratch = Vec::with_capacity(len + 16);
        let low = position.saturating_sub(SEARCH_BEHIND);
        let high = (position + SEARCH_AHEAD).min(MAX_SEGMENTS - 1);
        for candidate in (low..=high).filter(|c| *c != position) {
            let nonce = self.header.nonce(candidate, kind);
            let key = self.data_key.expose_secret();
            if gcm(
                Mode::Decrypt,
                key,
                &nonce,
                &self.header.aad,
                ciphertext,
                &mut scratch,
                tag,
            )
            .is_ok()
            {
                return if candidate < position {
                    StreamError::SegmentDuplicated {
                        position,
                        copy_of: candidate,
                    }
                } else {
                    StreamError::SegmentReordered {
                        position,
                        found: candidate,
                    }
                };
            }
        }
        StreamError::SegmentModified { segment: position }
    }
}

/// A summary of a verified stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub segments: u64,
    pub plaintext_bytes: u64,
    pub file_id: [u8; 16],
}

/// Copies every verified segment of `reader` to `out`. On error, `out` holds exactly the
/// verified prefix (every segment before the failing one), which is what recovery keeps.
pub fn open_to<R: Read, W: Write>(
    reader: &mut SealedReader<R>,
    out: &mut W,
    mut progress: impl FnMut(u64),
) -> Result<StreamSummary, StreamError> {
    let mut plaintext = Vec::with_capacity(reader.header().segment_size as usize + 16);
    loop {
        let kind = reader.next_segment(&mut plaintext)?;
        out.write_all(&plaintext)?;
        progress(reader.plaintext_bytes());
        if kind == Segment::Final {
            out.flush()?;
            return Ok(StreamSummary {
                segments: reader.segments_verified(),
                plaintext_bytes: reader.plaintext_bytes(),
                file_id: reader.header().file_id,
            });
        }
    }
}

/// Seals everything from `input` into `writer`'s stream and finishes it. Plaintext is sealed
/// straight from `input`'s buffer (whole segments are not copied first).
pub fn seal_from<R: BufRead, W: FrameSink>(
    input: &mut R,
    mut writer: SealedWriter<W>,
    mut progress: impl FnMut(u64),
) -> Result<(W, StreamSummary), StreamError> {
    loop {
        let chunk = match input.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let n = chunk.len();
        writer.write_plaintext(chunk)?;
        input.consume(n);
        progress(writer.plaintext_bytes());
    }
    writer.finish()
}

impl<R: Read> Read for SealedReader<R> {
    /// Verified plaintext as a byte stream, for consumers that parse records. Damage surfaces as
    /// `io::ErrorKind::InvalidData` wrapping the [`StreamError`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending_pos == self.pending.len() {
            if self.finished {
                return Ok(0);
            }
            let mut segment = std::mem::take(&mut self.pending);
            let result = self.next_segment(&mut segment);
            self.pending = segment;
            self.pending_pos = 0;
            result.map_err(into_io)?;
        }
        let n = buf.len().min(self.pending.len() - self.pending_pos);
        buf[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
        self.pending_pos += n;
        Ok(n)
    }
}
