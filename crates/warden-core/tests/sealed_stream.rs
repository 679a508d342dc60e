//! Security regression tests for sealed streams: every kind of damage is detected and named.

use warden_core::keyring::Purpose;
use warden_core::secret::Key32;
use warden_core::stream::{
    open_to, SealedReader, SealedWriter, Segment, StreamError, FRAME_HEADER_LEN, HEADER_LEN,
    MIN_SEGMENT_SIZE, TAG_LEN,
};

const SEG: u32 = MIN_SEGMENT_SIZE;
const FRAME: usize = FRAME_HEADER_LEN + SEG as usize + TAG_LEN;

fn key() -> Key32 {
    Key32::from_bytes([0x42; 32])
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn seal_with(data: &[u8], key: &Key32) -> Vec<u8> {
    let mut writer = SealedWriter::new(Vec::new(), Purpose::Recordings, key, SEG).unwrap();
    writer.write_plaintext(data).unwrap();
    writer.finish().unwrap().0
}

fn seal(data: &[u8]) -> Vec<u8> {
    seal_with(data, &key())
}

fn open(sealed: &[u8]) -> Result<Vec<u8>, StreamError> {
    let mut reader = SealedReader::new(sealed, Purpose::Recordings, &key())?;
    let mut out = Vec::new();
    open_to(&mut reader, &mut out, |_| {})?;
    Ok(out)
}

/// The byte range of frame `i` in a stream whose segments are all full except the last.
fn frame(i: usize) -> std::ops::Range<usize> {
    let start = HEADER_LEN + i * FRAME;
    start..start + FRAME
}

/// Verifies: V15, V70
#[test]
fn round_trips_at_every_boundary() {
    for len in [
        0,
        1,
        SEG as usize - 1,
        SEG as usize,
        SEG as usize + 1,
        3 * SEG as usize,
        5000,
    ] {
        let data = plaintext(len);
        assert_eq!(open(&seal(&data)).unwrap(), data, "length {len}");
    }
}

#[test]
fn split_writes_equal_one_write() {
    let data = plaintext(10_000);
    let mut writer = SealedWriter::new(Vec::new(), Purpose::Recordings, &key(), SEG).unwrap();
    for chunk in data.chunks(333) {
        writer.write_plaintext(chunk).unwrap();
    }
    let (sealed, summary) = writer.finish().unwrap();
    assert_eq!(summary.plaintext_bytes, 10_000);
    assert_eq!(open(&sealed).unwrap(), data);
}

#[test]
fn explicit_segment_seals_are_readable_prefixes() {
    // A recorder seals short segments on a timer; a crash after that keeps them.
    let mut writer = SealedWriter::new(Vec::new(), Purpose::Recordings, &key(), SEG).unwrap();
    writer.write_plaintext(b"first").unwrap();
    writer.seal_segment().unwrap();
    writer.seal_segment().unwrap(); // nothing buffered: no empty segment
    writer.write_plaintext(b"second").unwrap();
    writer.seal_segment().unwrap();
    assert_eq!(writer.segments_written(), 2);
    let (sealed, _) = writer.finish().unwrap();
    assert_eq!(open(&sealed).unwrap(), b"firstsecond");
}

#[test]
fn reading_through_the_read_trait() {
    use std::io::Read;
    let data = plaintext(4000);
    let sealed = seal(&data);
    let mut reader = SealedReader::new(&sealed[..], Purpose::Recordings, &key()).unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
}

/// Verifies: V18, V78, V83
#[test]
fn wrong_key_is_named() {
    let sealed = seal(b"secret");
    let err = SealedReader::new(
        &sealed[..],
        Purpose::Recordings,
        &Key32::from_bytes([1; 32]),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, StreamError::WrongKey(Purpose::Recordings)),
        "{err}"
    );
}

#[test]
fn wrong_purpose_is_named() {
    let sealed = seal(b"secret");
    let err = SealedReader::new(&sealed[..], Purpose::Config, &key())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StreamError::WrongPurpose {
                sealed_with: Purpose::Recordings,
                given: Purpose::Config
            }
        ),
        "{err}"
    );
}

/// Verifies: V17, V77
#[test]
fn every_single_byte_change_is_detected() {
    let data = plaintext(2 * SEG as usize + 100);
    let sealed = seal(&data);
    for i in 0..sealed.len() {
        let mut damaged = sealed.clone();
        damaged[i] ^= 0x01;
        let err = open(&damaged).expect_err(&format!("flip at byte {i} went unnoticed"));
        // Damage, never a wrong key: with the right key, a changed purpose byte or key id is
        // found out (the header opens once they are put back).
        assert!(
            err.is_damage()
                || matches!(
                    err,
                    StreamError::NotSealed | StreamError::UnsupportedVersion(_)
                ),
            "byte {i}: {err}"
        );
    }
}

/// Verifies: V17, V77
#[test]
fn modified_ciphertext_names_the_segment() {
    let mut sealed = seal(&plaintext(3 * SEG as usize + 10));
    sealed[frame(1).start + FRAME_HEADER_LEN + 5] ^= 0x80;
    assert!(matches!(
        open(&sealed),
        Err(StreamError::SegmentModified { segment: 1 })
    ));
}

/// A purpose byte changed to another known purpose, or a changed key id, with the file's own
/// key: damage (the header opens with this key once they are put back), not "wrong key".
#[test]
fn a_changed_purpose_or_key_id_is_damage_not_a_wrong_key() {
    for (at, value) in [
        (10, Purpose::Config.code()),
        (10, Purpose::Audit.code()),
        (35, 0),
    ] {
        let mut sealed = seal(b"data");
        sealed[at] = if sealed[at] == value {
            value ^ 1
        } else {
            value
        };
        let err = open(&sealed).unwrap_err();
        assert!(
            matches!(err, StreamError::BadHeader(why) if why.contains("purpose or key id")),
            "byte {at}: {err}"
        );
    }
}

/// Verifies: V18
#[test]
fn modified_header_is_a_bad_header() {
    let mut sealed = seal(b"data");
    sealed[20] ^= 1; // inside the file id, covered by the key wrap's associated data
    assert!(matches!(open(&sealed), Err(StreamError::BadHeader(_))));
    let mut sealed = seal(b"data");
    sealed[70] ^= 1; // inside the wrapped data key
    assert!(matches!(open(&sealed), Err(StreamError::BadHeader(_))));
    let mut sealed = seal(b"data");
    sealed[8] = 9;
    assert!(matches!(
        open(&sealed),
        Err(StreamError::UnsupportedVersion(9))
    ));
    assert!(matches!(
        open(b"hello world, not sealed"),
        Err(StreamError::NotSealed)
    ));
    assert!(matches!(
        open(&seal(b"x")[..50]),
        Err(StreamError::BadHeader(_))
    ));
}

/// Verifies: V17, V18
#[test]
fn truncation_is_told_apart_and_counts_what_was_verified() {
    let data = plaintext(3 * SEG as usize + 10);
    let sealed = seal(&data);
    // Cut at a segment boundary: the final segment is missing.
    let cut = &sealed[..frame(2).end];
    assert!(matches!(
        open(cut),
        Err(StreamError::Truncated { segments: 3, plaintext_bytes }) if plaintext_bytes == 3 * SEG as u64
    ));
    // Cut inside a frame.
    let cut = &sealed[..frame(1).start + 100];
    assert!(matches!(
        open(cut),
        Err(StreamError::Truncated { segments: 1, .. })
    ));
    // Only the header.
    assert!(matches!(
        open(&sealed[..HEADER_LEN]),
        Err(StreamError::Truncated { segments: 0, .. })
    ));
}

#[test]
fn recovery_keeps_exactly_the_verified_prefix() {
    let data = plaintext(3 * SEG as usize + 10);
    let sealed = seal(&data);
    let cut = &sealed[..frame(2).start + 10];
    let mut reader = SealedReader::new(cut, Purpose::Recordings, &key()).unwrap();
    let mut out = Vec::new();
    let err = open_to(&mut reader, &mut out, |_| {}).unwrap_err();
    assert!(matches!(err, StreamError::Truncated { segments: 2, .. }));
    assert_eq!(out, &data[..2 * SEG as usize]);
}

/// Verifies: V17, V77
#[test]
fn swapped_segments_are_reordered() {
    let sealed = seal(&plaintext(4 * SEG as usize + 10));
    let mut damaged = sealed.clone();
    let (a, b) = (frame(1), frame(2));
    damaged[a.clone()].copy_from_slice(&sealed[b.clone()]);
    damaged[b].copy_from_slice(&sealed[a]);
    assert!(matches!(
        open(&damaged),
        Err(StreamError::SegmentReordered {
            position: 1,
            found: 2
        })
    ));
}

#[test]
fn removed_segment_is_reported_as_out_of_order() {
    let sealed = seal(&plaintext(4 * SEG as usize + 10));
    let mut damaged = sealed[..frame(1).start].to_vec();
    damaged.extend_from_slice(&sealed[frame(2).start..]);
    assert!(matches!(
        open(&damaged),
        Err(StreamError::SegmentReordered {
            position: 1,
            found: 2
        })
    ));
}

#[test]
fn duplicated_segment_is_named() {
    let sealed = seal(&plaintext(4 * SEG as usize + 10));
    let mut damaged = sealed[..frame(2).end].to_vec();
    damaged.extend_from_slice(&sealed[frame(1)]);
    damaged.extend_from_slice(&sealed[frame(2).end..]);
    assert!(matches!(
        open(&damaged),
        Err(StreamError::SegmentDuplicated {
            position: 3,
            copy_of: 1
        })
    ));
}

/// Verifies: V17, V77
#[test]
fn spliced_segment_from_another_file_is_named() {
    let data = plaintext(3 * SEG as usize + 10);
    let ours = seal(&data);
    let theirs = seal(&data); // same key and content, different file
    let mut damaged = ours.clone();
    damaged[frame(1)].copy_from_slice(&theirs[frame(1)]);
    assert!(matches!(
        open(&damaged),
        Err(StreamError::SegmentFromOtherFile { segment: 1 })
    ));
    // Even with the marker forged to match, authentication fails.
    damaged[frame(1).start..frame(1).start + 4]
        .copy_from_slice(&ours[frame(1).start..frame(1).start + 4]);
    assert!(matches!(
        open(&damaged),
        Err(StreamError::SegmentModified { segment: 1 })
    ));
}

#[test]
fn trailing_data_after_the_final_segment_is_refused() {
    let mut sealed = seal(b"data");
    sealed.extend_from_slice(b"junk");
    assert!(matches!(
        open(&sealed),
        Err(StreamError::TrailingData { bytes: 4 })
    ));
}

// Found by the sealed_stream fuzz body: a final segment refused for trailing data was still
// counted as verified plaintext (segments and bytes no one received).
#[test]
fn a_final_segment_refused_for_trailing_data_is_not_counted() {
    let mut sealed = seal(&plaintext(SEG as usize + 10));
    sealed.extend_from_slice(b"junk");
    let mut reader = SealedReader::new(&sealed[..], Purpose::Recordings, &key()).unwrap();
    let mut out = Vec::new();
    assert_eq!(reader.next_segment(&mut out).unwrap(), Segment::More);
    assert!(matches!(
        reader.next_segment(&mut out),
        Err(StreamError::TrailingData { bytes: 4 })
    ));
    assert!(out.is_empty());
    assert_eq!(reader.segments_verified(), 1);
    assert_eq!(reader.plaintext_bytes(), u64::from(SEG));
}

#[test]
fn final_flag_cannot_be_moved() {
    // Marking an inner segment final (to hide the rest) fails authentication.
    let sealed = seal(&plaintext(3 * SEG as usize));
    let mut damaged = sealed[..frame(0).end].to_vec();
    damaged[frame(0).start + 4] = 1;
    assert!(matches!(
        open(&damaged),
        Err(StreamError::SegmentModified { segment: 0 })
    ));
}

#[test]
fn oversized_frame_length_is_a_bad_frame() {
    let mut sealed = seal(&plaintext(100));
    let len_at = HEADER_LEN + 5;
    sealed[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        open(&sealed),
        Err(StreamError::BadFrame { segment: 0, .. })
    ));
}

#[test]
fn segment_size_is_validated() {
    assert!(matches!(
        SealedWriter::new(Vec::new(), Purpose::Recordings, &key(), 10),
        Err(StreamError::BadSegmentSize(10))
    ));
}

/// Verifies: V16, V22
#[test]
fn each_file_gets_a_fresh_data_key_and_nonce_prefix() {
    let a = seal(b"same");
    let b = seal(b"same");
    assert_ne!(a[16..HEADER_LEN], b[16..HEADER_LEN]);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip_any_content_and_chunking(data in proptest::collection::vec(any::<u8>(), 0..5000), chunk in 1usize..3000) {
            let mut writer = SealedWriter::new(Vec::new(), Purpose::Recordings, &key(), SEG).unwrap();
            for c in data.chunks(chunk) {
                writer.write_plaintext(c).unwrap();
            }
            let (sealed, _) = writer.finish().unwrap();
            prop_assert_eq!(open(&sealed).unwrap(), data);
        }

        #[test]
        fn any_truncation_is_detected(len in 0usize..4000, cut_frac in 0.0f64..1.0) {
            let sealed = seal(&plaintext(len));
            let cut = HEADER_LEN + ((sealed.len() - HEADER_LEN) as f64 * cut_frac) as usize;
            prop_assume!(cut < sealed.len());
            let is_truncated = matches!(open(&sealed[..cut]), Err(StreamError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }
}

// ------------------------------------------------------------------ version 2 and re-wrapping

#[test]
fn a_version_2_header_is_rewrapped_in_place_and_the_segments_stay_valid() {
    let old = key();
    let new = Key32::from_bytes([0x77; 32]);
    let data = plaintext(10_000);
    let mut sealed = seal(&data);
    assert_eq!(sealed[8], 2, "new streams are version 2");
    let header =
        warden_core::stream::rewrap_header(&sealed, Purpose::Recordings, &old, &new).unwrap();
    sealed[..HEADER_LEN].copy_from_slice(&header);
    // Opens with the new key, whole; not with the old.
    let mut reader = SealedReader::new(&sealed[..], Purpose::Recordings, &new).unwrap();
    let mut out = Vec::new();
    warden_core::stream::open_to(&mut reader, &mut out, |_| {}).unwrap();
    assert_eq!(out, data);
    assert!(matches!(
        SealedReader::new(&sealed[..], Purpose::Recordings, &old),
        Err(StreamError::WrongKey(_))
    ));
    // With both keys, the header's key id picks the right one.
    let mut reader = SealedReader::with_keys(
        &sealed[..],
        Purpose::Recordings,
        &[old.clone(), new.clone()],
    )
    .unwrap();
    let mut out = Vec::new();
    warden_core::stream::open_to(&mut reader, &mut out, |_| {}).unwrap();
    assert_eq!(out, data);
    // The old header's wrap cannot be swapped back in under the new key id.
    let (id_old, id_new) = (
        warden_core::stream::key_id(&old),
        warden_core::stream::key_id(&new),
    );
    assert_eq!(warden_core::stream::peek_header(&sealed), Some((2, id_new)));
    assert_ne!(id_old, id_new);
}

/// Security regression (issue 12): in version 2 the segments do not authenticate the key wrap,
/// so a wrap from another file (same purpose key) must still fail: it holds another data key.
#[test]
fn a_key_wrap_spliced_from_another_file_does_not_open_the_segments() {
    let a = seal(&plaintext(5000));
    let b = seal(&plaintext(5000));
    let mut spliced = a.clone();
    spliced[47..HEADER_LEN].copy_from_slice(&b[47..HEADER_LEN]);
    assert!(open(&spliced).is_err());
    // And bytes of the authenticated part (file id, nonce prefix, segment size) still count.
    for i in [12, 20, 41] {
        let mut changed = a.clone();
        changed[i] ^= 1;
        assert!(open(&changed).is_err(), "byte {i}");
    }
}

#[test]
fn a_version_1_stream_still_opens_but_cannot_be_rewrapped() {
    let data = plaintext(3000);
    let mut sealed = Vec::new();
    let mut writer =
        SealedWriter::with_version(&mut sealed, Purpose::Recordings, &key(), 1024, 1).unwrap();
    writer.write_plaintext(&data).unwrap();
    writer.finish().unwrap();
    assert_eq!(sealed[8], 1);
    assert_eq!(open(&sealed).unwrap(), data);
    assert!(matches!(
        warden_core::stream::rewrap_header(&sealed, Purpose::Recordings, &key(), &Key32::random()),
        Err(StreamError::CannotRewrap)
    ));
    // Version 1 authenticates the whole header in every segment: a changed key id is damage.
    let mut changed = sealed.clone();
    changed[33] ^= 1;
    assert!(open(&changed).is_err());
}
