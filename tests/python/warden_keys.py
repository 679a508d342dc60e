#!/usr/bin/env python3
"""Independent derivation of warden's purpose keys from the passphrase and security.json (format
1), or their unwrapping from the master key slot (format 2, via keyslots_from_doc.py).

Proves that warden's KDF and key-check value interoperate with a second implementation:
PBKDF2-HMAC-SHA256 from Python's hashlib (Argon2id through argon2-cffi, when installed).

security.json (written by `warden init`):

    {
      "format": "warden-security",
      "version": 1,
      "created": "<RFC 3339>",
      "purposes": {
        "<purpose>": {                      # audit, config, database, recordings
          "kdf": {"algorithm": "PBKDF2-HMAC-SHA256", "iterations": N}
               | {"algorithm": "Argon2id", "memory_kib": M, "iterations": T, "parallelism": P},
          "salt": "<base64, standard alphabet>",
          "key_check": "<base64 of HMAC-SHA256(key, b'warden key check v1' + b'\\0' + purpose)>"
        }, ...
      }
    }

The passphrase is used as its UTF-8 bytes; each purpose key is 32 bytes.

Library:  purpose_key(security_json_or_path, passphrase, purpose) -> bytes (32)
Command line (test tool: prints a secret key):
    python3 warden_keys.py DATADIR PURPOSE --passphrase-file FILE [--format hex|fernet]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
from typing import Union

FORMAT_NAME = "warden-security"
PURPOSES = ("database", "recordings", "config", "audit")
PURPOSE_CODES = {"database": 1, "recordings": 2, "config": 3, "audit": 4}
KEY_CHECK_LABEL = b"warden key check v1"
PBKDF2_MIN_ITERATIONS = 1000
MIN_SALT_LEN = 16


class WardenKeyError(Exception):
    """Base class."""


class WrongPassphrase(WardenKeyError):
    pass


class MalformedSecurityFile(WardenKeyError):
    pass


def key_check(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, KEY_CHECK_LABEL + b"\x00" + purpose.encode("ascii"), hashlib.sha256).digest()


def load_security(source: Union[str, bytes, dict]) -> dict:
    """Accepts a parsed dict, JSON bytes, a path to security.json, or a data directory."""
    if isinstance(source, dict):
        doc = source
    elif isinstance(source, bytes):
        doc = json.loads(source)
    else:
        path = source
        if os.path.isdir(path):
            path = os.path.join(path, "security.json")
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    if doc.get("format") != FORMAT_NAME:
        raise MalformedSecurityFile(f"format is {doc.get('format')!r}, expected {FORMAT_NAME!r}")
    if doc.get("version") != 1:
        raise MalformedSecurityFile(f"unsupported version {doc.get('version')!r}")
    for p in PURPOSES:
        if p not in doc.get("purposes", {}):
            raise MalformedSecurityFile(f"no entry for purpose {p}")
    return doc


def derive(kdf: dict, passphrase: bytes, salt: bytes) -> bytes:
    algorithm = kdf.get("algorithm")
    if len(salt) < MIN_SALT_LEN:
        raise MalformedSecurityFile(f"salt is only {len(salt)} bytes")
    if algorithm == "PBKDF2-HMAC-SHA256":
        iterations = int(kdf["iterations"])
        if iterations < PBKDF2_MIN_ITERATIONS:
            raise MalformedSecurityFile(f"{iterations} PBKDF2 iterations is below the floor")
        return hashlib.pbkdf2_hmac("sha256", passphrase, salt, iterations, dklen=32)
    if algorithm == "Argon2id":
        from argon2.low_level import Type, hash_secret_raw  # argon2-cffi

        return hash_secret_raw(
            secret=passphrase,
            salt=salt,
            time_cost=int(kdf["iterations"]),
            memory_cost=int(kdf["memory_kib"]),
            parallelism=int(kdf["parallelism"]),
            hash_len=32,
            type=Type.ID,
            version=0x13,
        )
    raise MalformedSecurityFile(f"unknown KDF algorithm {algorithm!r}")


def purpose_key(source: Union[str, bytes, dict], passphrase: Union[str, bytes], purpose: str) -> bytes:
    """The 32-byte key for `purpose`: unwrapped from the master slot of a format-2 data directory
    (keyslots.json, docs/formats/keyslots.md), or derived and checked (format 1, security.json)."""
    if isinstance(source, str) and os.path.isfile(os.path.join(source, "keyslots.json")):
        import keyslots_from_doc as slots

        with open(os.path.join(source, "keyslots.json"), "rb") as f:
            doc = json.loads(f.read())
        if isinstance(passphrase, str):
            passphrase = passphrase.encode("utf-8")
        for slot in slots.find_slot(doc, "master"):
            try:
                return slots.unlock(doc, slot, passphrase)[purpose][1]
            except slots.WrongSecret:
                continue
        raise WrongPassphrase("wrong passphrase: it does not open the master key slot")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    doc = load_security(source)
    entry = doc["purposes"][purpose]
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    salt = base64.b64decode(entry["salt"], validate=True)
    expected = base64.b64decode(entry["key_check"], validate=True)
    if len(expected) != 32:
        raise MalformedSecurityFile(f"{purpose}.key_check is not 32 bytes")
    key = derive(entry["kdf"], passphrase, salt)
    if not hmac.compare_digest(key_check(key, purpose), expected):
        raise WrongPassphrase(f"wrong passphrase: it does not match the key check for the `{purpose}` key")
    return key


def fernet_key(key: bytes) -> bytes:
    """The config key in the form `cryptography.fernet.Fernet(key)` takes: base64url, padded."""
    return base64.urlsafe_b64encode(key)


def read_passphrase_file(path: str) -> str:
    """First line of the file, without its line ending (as warden reads it)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    return text.replace("\r", "\n").split("\n")[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="derive a warden purpose key (test tool)")
    p.add_argument("data_dir")
    p.add_argument("purpose", choices=PURPOSES)
    p.add_argument("--passphrase-file", required=True)
    p.add_argument("--format", choices=("hex", "fernet"), default="hex")
    args = p.parse_args(argv)
    try:
        key = purpose_key(args.data_dir, read_passphrase_file(args.passphrase_file), args.purpose)
    except WrongPassphrase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except (MalformedSecurityFile, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(key.hex() if args.format == "hex" else fernet_key(key).decode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
