#!/usr/bin/env python3
"""Independent decoder and encoder for warden's sealed-stream format, versions 1 and 2.

Written from docs/formats/sealed-stream.md alone (not from the Rust source), to prove
that the document is complete. Uses only the standard library and the `cryptography`
package (AES-256-GCM).

Library:
    decode(purpose_key, data, purpose_code=None, recover=False) -> bytes
    encode(purpose_key, purpose_code, plaintext, segment_size, seal_points=None) -> bytes

Command line (exit status as warden's: 0 ok, 1 error, 2 usage, 3 damaged, 4 wrong key):
    python3 sealed_stream.py decode KEYHEX IN OUT [--purpose CODE] [--recover]
    python3 sealed_stream.py encode KEYHEX IN OUT [--segment-size N] [--purpose CODE]
                                                  [--seal-at OFFSET ...]
    python3 sealed_stream.py vector FILE.json     (check a known-answer vector)
IN / OUT may be "-" for standard input / output.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import struct
import sys
from typing import Callable, Iterable, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# --- Constants from the document -------------------------------------------------------

MAGIC = b"WRDNSEAL"
VERSION = 0x02  # written by default; 0x01 is read too
VERSIONS = (0x01, 0x02)
ALGORITHM_AES256GCM = 0x01
PURPOSES = {0x01: "database", 0x02: "recordings", 0x03: "config", 0x04: "audit"}
PURPOSE_CODES = {name: code for code, name in PURPOSES.items()}
HEADER_LEN = 107
WRAP_AAD_LEN = 47  # header bytes 0..47 (magic through nonce_prefix)
FRAME_HEADER_LEN = 9
TAG_LEN = 16
MIN_SEGMENT = 1024
MAX_SEGMENT = 16 * 1024 * 1024
DEFAULT_SEGMENT = 65536
KIND_MORE = 0x00
KIND_FINAL = 0x01
MAX_SEGMENTS = 2**32
KEY_ID_LABEL = b"warden sealed-stream key id v1"
DIAG_BACK = 1024
DIAG_AHEAD = 64

assert len(KEY_ID_LABEL) == 30


# --- Errors: one class per kind the document names -------------------------------------


class SealedStreamError(Exception):
    """Base class for every decoding failure."""

    exit_code = 1


class NotASealedStream(SealedStreamError):
    """The first 8 bytes are not the magic."""

    exit_code = 3


class BadHeader(SealedStreamError):
    """Header damaged: an unknown version/algorithm/purpose, reserved byte, segment size out
    of range, or the key wrap failed although the key id matches ours."""

    exit_code = 3


class HeaderCutShort(BadHeader):
    """Fewer than 107 header bytes."""


class UnsupportedVersion(SealedStreamError):
    """A version other than 1: a newer format, not damage (exit status 1, as warden)."""

    exit_code = 1


class WrongKey(SealedStreamError):
    """The data key cannot be unwrapped and the key id is not ours."""

    exit_code = 4


class WrongPurpose(WrongKey):
    """The header names another key purpose than the key we hold."""


class Truncated(SealedStreamError):
    """The input ended before the final segment. `prefix` is the verified plaintext."""

    exit_code = 3

    def __init__(self, message: str, prefix: bytes, segments: int):
        super().__init__(message)
        self.prefix = prefix
        self.segments = segments


class Spliced(SealedStreamError):
    """A frame's marker is not this file's: a segment from another file."""

    exit_code = 3

    def __init__(self, message: str, segment: int):
        super().__init__(message)
        self.segment = segment


class BadFrame(SealedStreamError):
    """Unknown frame kind, or length greater than the segment size."""

    exit_code = 3

    def __init__(self, message: str, segment: int):
        super().__init__(message)
        self.segment = segment


class TrailingData(SealedStreamError):
    """Bytes follow the final frame."""

    exit_code = 3


class TooManySegments(SealedStreamError):
    """More than 2^32 segments (the counter is 32 bits)."""

    exit_code = 3


class NotAuthentic(SealedStreamError):
    """A segment failed authentication. Subclasses carry the best-effort diagnosis."""

    exit_code = 3

    def __init__(self, message: str, segment: int):
        super().__init__(message)
        self.segment = segment


class Modified(NotAuthentic):
    pass


class Duplicate(NotAuthentic):
    def __init__(self, message: str, segment: int, original: int):
        super().__init__(message, segment)
        self.original = original


class ReorderedOrRemoved(NotAuthentic):
    def __init__(self, message: str, segment: int, belongs_at: int):
        super().__init__(message, segment)
        self.belongs_at = belongs_at


# --- Key id, nonces ---------------------------------------------------------------------


def key_id(purpose_key: bytes) -> bytes:
    """First 8 bytes of HMAC-SHA256(K, "warden sealed-stream key id v1")."""
    return hmac.new(purpose_key, KEY_ID_LABEL, hashlib.sha256).digest()[:8]


def segment_nonce(nonce_prefix: bytes, counter: int, kind: int) -> bytes:
    return nonce_prefix + struct.pack(">IB", counter, kind)


def _check_key(purpose_key: bytes) -> None:
    if len(purpose_key) != 32:
        raise ValueError("purpose key must be 32 bytes")


# --- Decoder ---------------------------------------------------------------------------


class _Header:
    def __init__(self, raw: bytes):
        self.raw = raw
        self.version = raw[8]
        self.algorithm = raw[9]
        self.purpose = raw[10]
        self.reserved = raw[11]
        (self.segment_size,) = struct.unpack(">I", raw[12:16])
        self.file_id = raw[16:32]
        self.key_id = raw[32:40]
        self.nonce_prefix = raw[40:47]
        self.wrap_nonce = raw[47:59]
        self.wrapped = raw[59:107]  # wrapped_key ‖ wrap_tag

    @property
    def marker(self) -> bytes:
        return self.file_id[:4]

    @property
    def aad(self) -> bytes:
        return segment_aad(self.raw)


def segment_aad(header: bytes) -> bytes:
    """What every segment authenticates: version 1, the whole header; version 2, the header
    without its key id (bytes 32..40) and key wrap (bytes 47..107)."""
    if header[8] == 0x01:
        return header
    return header[0:32] + header[40:47]


def _parse_header(purpose_key: bytes, data: bytes, purpose_code: Optional[int]):
    # Step 1: magic. Input shorter than the magic cannot be identified as a sealed stream.
    if data[:8] != MAGIC:
        raise NotASealedStream("not a sealed stream (bad magic)")
    # Step 2: the rest of the header and its fixed fields.
    if len(data) < HEADER_LEN:
        raise HeaderCutShort(f"bad header: cut short ({len(data)} of {HEADER_LEN} bytes)")
    h = _Header(data[:HEADER_LEN])
    if h.version not in VERSIONS:
        raise UnsupportedVersion(f"unsupported version {h.version} (this decoder reads 1 and 2)")
    if h.algorithm != ALGORITHM_AES256GCM:
        raise BadHeader(f"bad header: unknown algorithm {h.algorithm}")
    if h.purpose not in PURPOSES:
        raise BadHeader(f"bad header: unknown purpose {h.purpose}")
    if h.reserved != 0:
        raise BadHeader(f"bad header: reserved byte is {h.reserved}")
    if not MIN_SEGMENT <= h.segment_size <= MAX_SEGMENT:
        raise BadHeader(f"bad header: segment size {h.segment_size} out of range")
    # Steps 3 and 4: unwrap the data key; a header naming another purpose or key id is
    # damage if it opens with this key once they are put back.
    def unwrap(raw: bytes) -> Optional[bytes]:
        try:
            return AESGCM(purpose_key).decrypt(raw[47:59], raw[59:107], raw[:WRAP_AAD_LEN])
        except InvalidTag:
            return None

    ours = purpose_code if purpose_code is not None else h.purpose
    dk = unwrap(h.raw)
    if dk is None or h.purpose != ours:
        our_id = key_id(purpose_key)
        if h.purpose != ours or not hmac.compare_digest(h.key_id, our_id):
            as_ours = h.raw[:10] + bytes([ours]) + h.raw[11:32] + our_id + h.raw[40:]
            if unwrap(as_ours) is not None:
                raise BadHeader("bad header: the purpose or key id was modified")
            if h.purpose != ours:
                raise WrongPurpose(
                    f"wrong key: file is sealed for purpose {PURPOSES[h.purpose]}, "
                    f"key is for {PURPOSES.get(purpose_code, purpose_code)}"
                )
            raise WrongKey("wrong key: file was sealed under another key")
        raise BadHeader("bad header: data key does not unwrap (header modified)")
    if len(dk) != 32:
        raise BadHeader("bad header: data key has the wrong length")
    return h, dk


def _diagnose(aead: AESGCM, h: _Header, i: int, kind: int, body: bytes) -> NotAuthentic:
    """Step 6: best-effort diagnosis of a frame that failed authentication at counter i."""
    for j in range(i - 1, max(-1, i - 1 - DIAG_BACK), -1):
        if _opens(aead, h, j, kind, body):
            return Duplicate(f"segment {i} is a duplicate of segment {j}", i, j)
    for j in range(i + 1, min(MAX_SEGMENTS, i + 1 + DIAG_AHEAD)):
        if _opens(aead, h, j, kind, body):
            return ReorderedOrRemoved(
                f"segment {i} belongs at position {j}: segments reordered or removed", i, j
            )
    return Modified(f"segment {i} was modified", i)


def _opens(aead: AESGCM, h: _Header, counter: int, kind: int, body: bytes) -> bool:
    try:
        aead.decrypt(segment_nonce(h.nonce_prefix, counter, kind), body, h.aad)
        return True
    except InvalidTag:
        return False


def decode_segments(
    purpose_key: bytes, data: bytes, purpose_code: Optional[int] = None
) -> Iterable[bytes]:
    """Yield each segment's plaintext once it is authenticated. Raises on the first damage
    (after yielding every authentic segment before it)."""
    _check_key(purpose_key)
    data = bytes(data)
    h, dk = _parse_header(purpose_key, data, purpose_code)
    aead = AESGCM(dk)
    pos = HEADER_LEN
    i = 0
    out_len = 0
    while True:
        if i >= MAX_SEGMENTS:
            raise TooManySegments("more than 2^32 segments")
        # Step 5: frame header.
        if len(data) - pos < FRAME_HEADER_LEN:
            raise Truncated(
                f"truncated: final segment missing after {i} segments ({out_len} bytes verified)",
                b"",
                i,
            )
        marker = data[pos : pos + 4]
        kind = data[pos + 4]
        (length,) = struct.unpack(">I", data[pos + 5 : pos + 9])
        if marker != h.marker:
            raise Spliced(f"segment {i} is from another file (spliced)", i)
        if kind not in (KIND_MORE, KIND_FINAL):
            raise BadFrame(f"bad frame: segment {i} has unknown kind {kind}", i)
        if length > h.segment_size:
            raise BadFrame(
                f"bad frame: segment {i} length {length} exceeds segment size {h.segment_size}", i
            )
        start = pos + FRAME_HEADER_LEN
        end = start + length + TAG_LEN
        if len(data) < end:
            raise Truncated(
                f"truncated: segment {i} cut short ({out_len} bytes verified)", b"", i
            )
        body = data[start:end]
        try:
            pt = aead.decrypt(segment_nonce(h.nonce_prefix, i, kind), body, h.aad)
        except InvalidTag:
            raise _diagnose(aead, h, i, kind, body) from None
        out_len += len(pt)
        yield pt
        pos = end
        if kind == KIND_FINAL:
            if pos != len(data):
                raise TrailingData(
                    f"trailing data: {len(data) - pos} bytes after the final segment"
                )
            return
        i += 1


def decode(
    purpose_key: bytes,
    data: bytes,
    purpose_code: Optional[int] = None,
    recover: bool = False,
) -> bytes:
    """Decode a whole sealed stream. `purpose_code`, when given, is the purpose of
    `purpose_key` (step 3). With `recover=True` a truncated file returns its verified
    prefix instead of raising Truncated."""
    out = []
    try:
        for pt in decode_segments(purpose_key, data, purpose_code):
            out.append(pt)
    except Truncated as e:
        prefix = b"".join(out)
        if recover:
            return prefix
        raise Truncated(str(e), prefix, e.segments) from None
    return b"".join(out)


# --- Encoder ---------------------------------------------------------------------------


def encode(
    purpose_key: bytes,
    purpose_code: int,
    plaintext: bytes,
    segment_size: int = DEFAULT_SEGMENT,
    seal_points: Optional[Iterable[int]] = None,
    *,
    file_id: Optional[bytes] = None,
    nonce_prefix: Optional[bytes] = None,
    wrap_nonce: Optional[bytes] = None,
    data_key: Optional[bytes] = None,
    kinds: Optional[Callable[[int, bool], int]] = None,
    version: int = VERSION,
) -> bytes:
    """Seal `plaintext`. Segments are filled up to `segment_size`; every offset in
    `seal_points` (0 ≤ p ≤ len(plaintext)) additionally ends a non-final segment there, so
    callers can make short (even empty) non-final segments like the session recorder's
    timer does. The final segment holds whatever remains, and is empty when the last seal
    point is at the end of the plaintext or the plaintext is empty.

    The random values (file_id, nonce_prefix, wrap_nonce, data_key) are drawn from os.urandom
    unless given, which only known-answer tests should do. `kinds` is for tests that forge
    damage: it maps (segment index, is_last) to the kind byte."""
    _check_key(purpose_key)
    if purpose_code not in PURPOSES:
        raise ValueError(f"unknown purpose code {purpose_code}")
    if not MIN_SEGMENT <= segment_size <= MAX_SEGMENT:
        raise ValueError(f"segment size {segment_size} out of range")
    plaintext = bytes(plaintext)
    n = len(plaintext)
    points = sorted(set(seal_points or ()))
    if any(p < 0 or p > n for p in points):
        raise ValueError("seal point outside the plaintext")

    # Segment boundaries: (start, end, final).
    bounds = []
    start = 0
    for p in points + [None]:
        stop = n if p is None else p
        while stop - start > segment_size:
            bounds.append((start, start + segment_size))
            start += segment_size
        if p is None:
            bounds.append((start, stop))  # the final segment (possibly empty)
        else:
            bounds.append((start, stop))
            start = stop
    if len(bounds) > MAX_SEGMENTS:
        raise ValueError("too many segments")

    file_id = _fixed_or_random(file_id, 16, "file_id")
    nonce_prefix = _fixed_or_random(nonce_prefix, 7, "nonce_prefix")
    wrap_nonce = _fixed_or_random(wrap_nonce, 12, "wrap_nonce")
    dk = _fixed_or_random(data_key, 32, "data_key")
    head = (
        MAGIC
        + bytes([version, ALGORITHM_AES256GCM, purpose_code, 0])
        + struct.pack(">I", segment_size)
        + file_id
        + key_id(purpose_key)
        + nonce_prefix
    )
    assert len(head) == WRAP_AAD_LEN
    wrapped = AESGCM(purpose_key).encrypt(wrap_nonce, dk, head)
    header = head + wrap_nonce + wrapped
    assert len(header) == HEADER_LEN

    aead = AESGCM(dk)
    out = [header]
    last = len(bounds) - 1
    for i, (a, b) in enumerate(bounds):
        is_last = i == last
        kind = KIND_FINAL if is_last else KIND_MORE
        if kinds is not None:
            kind = kinds(i, is_last)
        seg = plaintext[a:b]
        body = aead.encrypt(segment_nonce(nonce_prefix, i, kind), seg, segment_aad(header))
        out.append(file_id[:4] + bytes([kind]) + struct.pack(">I", len(seg)) + body)
    return b"".join(out)


def _fixed_or_random(value: Optional[bytes], size: int, name: str) -> bytes:
    if value is None:
        return os.urandom(size)
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes")
    return bytes(value)


def frames(data: bytes) -> list:
    """Split a well-formed stream into (header, [frame bytes, ...]) without decrypting.
    For tests that rearrange frames."""
    header = data[:HEADER_LEN]
    pos = HEADER_LEN
    out = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos + 5 : pos + 9])
        end = pos + FRAME_HEADER_LEN + length + TAG_LEN
        out.append(data[pos:end])
        pos = end
    return [header, out]


# --- Known-answer vector ---------------------------------------------------------------


def check_vector(vector: dict) -> None:
    """Checks a known-answer vector (docs/formats/sealed-stream-v1.json): the decoder
    recovers the plaintext, and the encoder, given the same random values, reproduces the
    sealed bytes exactly. Raises AssertionError on a mismatch."""
    h = bytes.fromhex
    key = h(vector["purpose_key"])
    sealed = h(vector["sealed"])
    plaintext = h(vector["plaintext"])
    assert key_id(key) == h(vector["key_id"]), "key id differs"
    assert decode(key, sealed, vector["purpose"]) == plaintext, "decoded plaintext differs"
    again = encode(
        key,
        vector["purpose"],
        plaintext,
        vector["segment_size"],
        vector["seal_points"],
        file_id=h(vector["file_id"]),
        nonce_prefix=h(vector["nonce_prefix"]),
        wrap_nonce=h(vector["wrap_nonce"]),
        data_key=h(vector["data_key"]),
        version=vector.get("version", 1),
    )
    assert again == sealed, "re-encoded bytes differ"


# --- Command line ----------------------------------------------------------------------


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _purpose(value: str) -> int:
    if value in PURPOSE_CODES:
        return PURPOSE_CODES[value]
    code = int(value, 0)
    if code not in PURPOSES:
        raise argparse.ArgumentTypeError(f"unknown purpose {value}")
    return code


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode")
    d.add_argument("keyhex")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--purpose", type=_purpose, default=None)
    d.add_argument("--recover", action="store_true")
    e = sub.add_parser("encode")
    e.add_argument("keyhex")
    e.add_argument("input")
    e.add_argument("output")
    e.add_argument("--segment-size", type=int, default=DEFAULT_SEGMENT)
    e.add_argument("--purpose", type=_purpose, default=PURPOSE_CODES["recordings"])
    e.add_argument("--seal-at", type=int, action="append", default=[])
    v = sub.add_parser("vector", help="check a known-answer vector file (JSON)")
    v.add_argument("file")
    args = p.parse_args(argv)

    if args.cmd == "vector":
        import json

        with open(args.file, "rb") as f:
            vector = json.load(f)
        try:
            check_vector(vector)
        except AssertionError as exc:
            print(f"error: vector {args.file}: {exc}", file=sys.stderr)
            return 1
        print(f"OK {args.file}")
        return 0

    try:
        key = bytes.fromhex(args.keyhex)
        _check_key(key)
    except ValueError as exc:
        print(f"error: key: {exc}", file=sys.stderr)
        return 2

    data = _read(args.input)
    if args.cmd == "encode":
        try:
            out = encode(key, args.purpose, data, args.segment_size, args.seal_at)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _write(args.output, out)
        return 0

    try:
        out = decode(key, data, args.purpose)
    except Truncated as exc:
        if args.recover:
            _write(args.output, exc.prefix)
            print(
                f"warning: {exc}; recovered {len(exc.prefix)} verified bytes", file=sys.stderr
            )
        else:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except SealedStreamError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    _write(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
