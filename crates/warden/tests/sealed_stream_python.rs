//! Interop: the real `warden` binary against an independent sealed-stream implementation in
//! Python (`tests/python/sealed_stream.py`), written only from `docs/formats/sealed-stream.md`,
//! with the purpose key derived independently in Python (`tests/python/warden_keys.py`).
//!
//! Both directions: files sealed by `warden vault seal` decode in Python byte for byte, files
//! encoded in Python (including short and empty non-final segments) open with `warden vault
//! open`, and damage to Python-encoded files is refused by warden with the named error.
//! Security regression tests: a decoder that accepted any of the damaged files would fail here.

mod support;

use std::path::Path;

use support::{
    join, pseudo_random, run, split_frames, Fixture, Python, FRAME_HEADER_LEN, HEADER_LEN, TAG_LEN,
};
use warden_core::keyring::Purpose;

/// Sizes around the 64 KiB segment boundary warden writes, plus empty and ~1 MiB.
const SIZES: [usize; 7] = [0, 1, 65535, 65536, 65537, 3 * 65536, 1024 * 1024 + 4321];

/// Python decodes `sealed` with `key_hex`; returns the run (stdout is unused: output to OUT).
fn python_decode(
    py: &Python,
    key_hex: &str,
    sealed: &Path,
    out: &Path,
    extra: &[&str],
) -> support::Run {
    let mut cmd = py.script(
        "sealed_stream.py",
        [
            "decode".as_ref(),
            key_hex.as_ref(),
            sealed.as_os_str(),
            out.as_os_str(),
            "--purpose".as_ref(),
            "recordings".as_ref(),
        ],
    );
    cmd.args(extra);
    run(&mut cmd)
}

/// Python encodes `plaintext` under `key_hex` into `out`.
fn python_encode(
    py: &Python,
    key_hex: &str,
    input: &Path,
    out: &Path,
    segment_size: usize,
    seal_at: &[usize],
    purpose: &str,
) {
    let mut cmd = py.script(
        "sealed_stream.py",
        [
            "encode".as_ref(),
            key_hex.as_ref(),
            input.as_os_str(),
            out.as_os_str(),
            "--segment-size".as_ref(),
            segment_size.to_string().as_ref(),
            "--purpose".as_ref(),
            purpose.as_ref(),
        ],
    );
    for point in seal_at {
        cmd.arg("--seal-at").arg(point.to_string());
    }
    run(&mut cmd).ok();
}

/// Verifies: V7, V8
#[test]
fn python_derives_the_same_purpose_keys_and_checks_the_key_check() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    for purpose in Purpose::ALL {
        let from_python = py.purpose_key(&fx, purpose, "hex");
        assert_eq!(
            from_python,
            hex::encode(fx.key(purpose).expose_secret()),
            "{purpose} key differs between warden-core and Python"
        );
    }
    // A wrong passphrase fails Python's key check, as it fails warden's.
    let wrong_pass = fx.file(
        "wrong-passphrase",
        b"not the passphrase of this directory\n",
    );
    run(&mut py.script(
        "warden_keys.py",
        [
            fx.data_dir.as_os_str(),
            "recordings".as_ref(),
            "--passphrase-file".as_ref(),
            wrong_pass.as_os_str(),
        ],
    ))
    .expect_code(4)
    .stderr_has(&["wrong passphrase"]);
}

/// Verifies: V15, V16
#[test]
fn warden_sealed_files_decode_in_python() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let key_hex = py.purpose_key(&fx, Purpose::Recordings, "hex");
    for (i, size) in SIZES.into_iter().enumerate() {
        let plaintext = pseudo_random(size, i as u64 + 1);
        let name = format!("plain-{size}");
        let sealed = fx.seal(&name, &plaintext);
        // Warden writes full 64 KiB segments: header + ceil(size / 64 KiB) frames (at least one).
        let segments = size.div_ceil(65536).max(1);
        assert_eq!(
            sealed.len(),
            HEADER_LEN + segments * (FRAME_HEADER_LEN + TAG_LEN) + size,
            "unexpected sealed length for {size} bytes"
        );
        let decoded = fx.path(&format!("{name}.py-decoded"));
        python_decode(
            &py,
            &key_hex,
            &fx.path(&format!("{name}.sealed")),
            &decoded,
            &[],
        )
        .ok();
        assert!(
            std::fs::read(&decoded).unwrap() == plaintext,
            "Python decoded {size} bytes differently"
        );
    }
}

#[test]
fn python_encoded_files_open_with_warden() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let key_hex = py.purpose_key(&fx, Purpose::Recordings, "hex");
    // (size, segment size, seal points): short non-final segments like the recorder's timer
    // makes, empty non-final segments, an empty final segment, minimum and maximum-ish sizes.
    let cases: &[(usize, usize, &[usize])] = &[
        (0, 65536, &[]),
        (1, 65536, &[]),
        (65535, 65536, &[]),
        (65536, 65536, &[]),
        (65536, 65536, &[65536]),
        (65537, 65536, &[]),
        (1024 * 1024 + 7, 65536, &[]),
        (5000, 1024, &[1, 2, 700, 3000]),
        (5000, 1024, &[0, 0, 5000]),
        (200_000, 4096, &[10, 4106, 4107, 100_000, 199_999]),
        (300_000, 16 * 1024 * 1024, &[123_456]),
    ];
    for (i, &(size, segment_size, seal_at)) in cases.iter().enumerate() {
        let plaintext = pseudo_random(size, 100 + i as u64);
        let input = fx.file(&format!("py-plain-{i}"), &plaintext);
        let sealed = fx.path(&format!("py-{i}.sealed"));
        python_encode(
            &py,
            &key_hex,
            &input,
            &sealed,
            segment_size,
            seal_at,
            "recordings",
        );
        let opened = fx.path(&format!("py-{i}.opened"));
        run(fx.admin().args(["vault", "open"]).arg(&sealed).arg(&opened)).ok();
        assert!(
            std::fs::read(&opened).unwrap() == plaintext,
            "case {i}: warden opened {size} bytes (segment size {segment_size}, seal points {seal_at:?}) differently"
        );
        let verified = run(fx.admin().args(["vault", "verify"]).arg(&sealed));
        verified.ok();
        assert!(
            verified.stdout_text().starts_with("OK "),
            "case {i}: {}",
            verified.stdout_text()
        );
    }
}

/// Each kind of damage to a Python-encoded file: warden's exit status and the words it must use.
/// Verifies: V18, V77
#[test]
fn damaged_python_files_are_refused_by_warden_with_the_named_error() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let key_hex = py.purpose_key(&fx, Purpose::Recordings, "hex");
    let plaintext = pseudo_random(5000, 7);
    let input = fx.file("plain", &plaintext);
    let good_path = fx.path("good.sealed");
    python_encode(&py, &key_hex, &input, &good_path, 1024, &[], "recordings");
    let good = std::fs::read(&good_path).unwrap();
    let other_path = fx.path("other.sealed");
    python_encode(&py, &key_hex, &input, &other_path, 1024, &[], "recordings");
    let (header, frames) = split_frames(&good);
    let (_, other_frames) = split_frames(&std::fs::read(&other_path).unwrap());
    assert_eq!(frames.len(), 5, "5000 bytes in 1 KiB segments");
    let f: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();

    let mut flipped_segment = good.clone();
    flipped_segment[HEADER_LEN + FRAME_HEADER_LEN + 100] ^= 0x01;
    let mut flipped_header = good.clone();
    flipped_header[20] ^= 0x80; // inside file_id: authenticated by the key wrap
    let mut spliced_frames = f.clone();
    spliced_frames[2] = &other_frames[2];
    let mut bad_marker = good.clone();
    bad_marker[HEADER_LEN] ^= 0xff;
    let mut version_2 = good.clone();
    version_2[8] = 3;
    let mut purpose_changed = good.clone();
    purpose_changed[10] = Purpose::Config.code(); // the file's own key: damage, not wrong key

    // Python encodes with the config key for the config purpose: warden holds the recordings key.
    let config_hex = py.purpose_key(&fx, Purpose::Config, "hex");
    let wrong_purpose_path = fx.path("config-purpose.sealed");
    python_encode(
        &py,
        &config_hex,
        &input,
        &wrong_purpose_path,
        1024,
        &[],
        "config",
    );
    // Same purpose byte, another key: as if sealed by another installation.
    let other_key_path = fx.path("other-key.sealed");
    python_encode(
        &py,
        &"ab".repeat(32),
        &input,
        &other_key_path,
        1024,
        &[],
        "recordings",
    );

    let cases: Vec<(&str, Vec<u8>, i32, &[&str])> = vec![
        (
            "flipped bit in a segment",
            flipped_segment,
            3,
            &["segment 0", "modified"],
        ),
        (
            "flipped bit in the header",
            flipped_header,
            3,
            &["bad header"],
        ),
        (
            "purpose byte changed to another known purpose",
            purpose_changed,
            3,
            &["bad header", "purpose or key id was modified"],
        ),
        ("header only", header.clone(), 3, &["truncated"]),
        (
            "final segment removed",
            join(&header, &f[..4]),
            3,
            &["truncated"],
        ),
        (
            "cut inside a segment",
            good[..good.len() - 10].to_vec(),
            3,
            &["truncated"],
        ),
        (
            "a newer format version (not damage)",
            version_2,
            1,
            &["version 3", "not supported"],
        ),
        (
            "header cut short",
            good[..60].to_vec(),
            3,
            &["bad header", "cut short"],
        ),
        (
            "not a sealed stream",
            plaintext[..200].to_vec(),
            3,
            &["not a warden sealed stream"],
        ),
        (
            "segments swapped",
            join(&header, &[f[0], f[2], f[1], f[3], f[4]]),
            3,
            &["position 1", "reordered"],
        ),
        (
            "a segment removed",
            join(&header, &[f[0], f[1], f[3], f[4]]),
            3,
            &["removed"],
        ),
        (
            "a segment duplicated",
            join(&header, &[f[0], f[1], f[1], f[2], f[3], f[4]]),
            3,
            &["duplicated"],
        ),
        (
            "a segment from another file",
            join(&header, &spliced_frames),
            3,
            &["segment 2", "spliced"],
        ),
        ("a marker changed", bad_marker, 3, &["spliced"]),
        (
            "data after the final segment",
            join(&header, &[f[0], f[1], f[2], f[3], f[4], f[4]]),
            3,
            &["after the final segment"],
        ),
        (
            "sealed for another purpose",
            std::fs::read(&wrong_purpose_path).unwrap(),
            4,
            &["wrong key", "config"],
        ),
        (
            "sealed under another key",
            std::fs::read(&other_key_path).unwrap(),
            4,
            &["wrong key"],
        ),
    ];
    for (i, (what, bytes, code, words)) in cases.into_iter().enumerate() {
        let damaged = fx.file(&format!("damaged-{i}.sealed"), &bytes);
        let out = fx.path(&format!("damaged-{i}.opened"));
        let opened = run(fx.admin().args(["vault", "open"]).arg(&damaged).arg(&out));
        opened.expect_code(code).stderr_has(words);
        assert!(!out.exists(), "{what}: `vault open` left an output file");
        run(fx.admin().args(["vault", "verify"]).arg(&damaged))
            .expect_code(code)
            .stderr_has(words);
    }
}

/// The other direction: Python's decoder names the damage in files warden sealed.
#[test]
fn python_names_the_damage_in_warden_files() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let key_hex = py.purpose_key(&fx, Purpose::Recordings, "hex");
    let plaintext = pseudo_random(4 * 65536 + 99, 11);
    let good = fx.seal("plain", &plaintext);
    let other = fx.seal("plain-again", &plaintext);
    let (header, frames) = split_frames(&good);
    let (_, other_frames) = split_frames(&other);
    let f: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    assert_eq!(f.len(), 5);
    let mut flipped = good.clone();
    flipped[good.len() - 20] ^= 0x04;

    let cases: Vec<(Vec<u8>, i32, &str)> = vec![
        (flipped, 3, "Modified"),
        (join(&header, &f[..3]), 3, "Truncated"),
        (
            join(&header, &[f[0], f[1], f[3], f[2], f[4]]),
            3,
            "ReorderedOrRemoved",
        ),
        (
            join(&header, &[f[0], f[0], f[1], f[2], f[3], f[4]]),
            3,
            "Duplicate",
        ),
        (
            join(&header, &[f[0], &other_frames[1], f[2], f[3], f[4]]),
            3,
            "Spliced",
        ),
        (
            join(&header, &[f[0], f[1], f[2], f[3], f[4], b"x"]),
            3,
            "TrailingData",
        ),
        (good[..50].to_vec(), 3, "HeaderCutShort"),
        (
            [&good[..8], &[3u8][..], &good[9..]].concat(),
            1,
            "UnsupportedVersion",
        ),
    ];
    for (i, (bytes, code, class)) in cases.into_iter().enumerate() {
        let damaged = fx.file(&format!("damaged-{i}.sealed"), &bytes);
        python_decode(
            &py,
            &key_hex,
            &damaged,
            &fx.path(&format!("damaged-{i}.out")),
            &[],
        )
        .expect_code(code)
        .stderr_has(&[class]);
    }
    // The same file with the config key: wrong key, named by Python as warden names it.
    let config_hex = py.purpose_key(&fx, Purpose::Config, "hex");
    python_decode(
        &py,
        &config_hex,
        &fx.path("plain.sealed"),
        &fx.path("wrong.out"),
        &[],
    )
    .expect_code(4)
    .stderr_has(&["WrongKey"]);
}

/// `--recover` on a truncated file gives the same verified prefix in warden and in Python.
#[test]
fn recovered_prefix_agrees_between_warden_and_python() {
    let Some(py) = support::python() else { return };
    let fx = Fixture::new();
    let key_hex = py.purpose_key(&fx, Purpose::Recordings, "hex");
    let plaintext = pseudo_random(3 * 65536 + 500, 21);
    let sealed = fx.seal("plain", &plaintext);
    // Cut in the middle of the third segment: two segments (128 KiB) are verifiable.
    let cut = fx.file(
        "cut.sealed",
        &sealed[..HEADER_LEN + 2 * (65536 + 25) + 1000],
    );
    let from_warden = fx.path("cut.warden");
    run(fx
        .admin()
        .args(["vault", "open", "--recover"])
        .arg(&cut)
        .arg(&from_warden))
    .ok()
    .stderr_has(&["truncated", "recovered", "131072 bytes"]);
    let from_python = fx.path("cut.python");
    python_decode(&py, &key_hex, &cut, &from_python, &["--recover"]).expect_code(3);
    let warden_bytes = std::fs::read(&from_warden).unwrap();
    assert!(warden_bytes == std::fs::read(&from_python).unwrap());
    assert!(warden_bytes == plaintext[..2 * 65536]);
}

/// The known-answer vector in `docs/formats/`: warden-core opens it, and Python both decodes
/// it and reproduces it byte for byte from the same random values.
#[test]
fn known_answer_vector_opens_in_warden_core_and_python() {
    let path = support::repo_root().join("docs/formats/sealed-stream-v1.json");
    let vector: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let field = |name: &str| hex::decode(vector[name].as_str().unwrap()).unwrap();
    let key = warden_core::secret::Key32::from_slice(&field("purpose_key")).unwrap();
    let sealed = field("sealed");
    let mut reader = warden_core::stream::SealedReader::new(
        std::io::Cursor::new(sealed),
        Purpose::Recordings,
        &key,
    )
    .expect("warden-core reads the vector's header");
    let mut plaintext = Vec::new();
    let summary = warden_core::stream::open_to(&mut reader, &mut plaintext, |_| {})
        .expect("warden-core opens the vector");
    assert_eq!(plaintext, field("plaintext"));
    assert_eq!(summary.segments, 3);
    assert_eq!(summary.file_id.to_vec(), field("file_id"));

    let Some(py) = support::python() else { return };
    run(&mut py.script("sealed_stream.py", ["vector".as_ref(), path.as_os_str()])).ok();
}
