#!/usr/bin/env python3
"""An independent implementation of docs/formats/keys.md, written from that document alone.

It reads security.json (checking every rule and bound the document states), derives the four
purpose keys from the passphrase, checks their key checks, opens the SQLCipher database with the
raw `database` key, opens a Fernet-sealed configuration file with the `config` key, and opens
the auditor key file with the auditor passphrase. It prints one JSON object (test tool: it
includes the derived keys, in hex) and exits 0, or prints an error and exits 1.

    python3 keys_from_doc.py DATA_DIR PASSPHRASE_FILE
        [--config FILE --config-plain FILE]          a sealed config and its expected plaintext
        [--auditor-key FILE --auditor-passphrase-file FILE]
    python3 keys_from_doc.py --bounds                the bounds as the document states them
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys

PURPOSES = ("database", "recordings", "config", "audit")

# "KDF parameters" and "security.json" tables of the document.
BOUNDS = {
    "pbkdf2_iterations": (1_000, 10_000_000),
    "argon2_memory_kib": (8_192, 4_194_304),
    "argon2_iterations": (1, 64),
    "argon2_parallelism": (1, 64),
    "argon2_max_work_kib": 16_777_216,
    "salt_len": (16, 64),
}


class Refused(Exception):
    pass


def first_line(path: str) -> bytes:
    """The first line without its line ending (\\n, \\r or \\r\\n), as UTF-8 bytes."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8")
    for end in ("\r", "\n"):
        text = text.split(end)[0]
    return text.encode("utf-8")


def b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"{what} is not base64")


def within(value, bounds, what):
    low, high = bounds
    if not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{what} is {value!r}; accepted {low} to {high}")


def check_kdf(kdf: dict, where: str) -> dict:
    algorithm = kdf.get("algorithm")
    if algorithm == "PBKDF2-HMAC-SHA256":
        within(kdf.get("iterations"), BOUNDS["pbkdf2_iterations"], f"{where}.iterations")
    elif algorithm == "Argon2id":
        within(kdf.get("memory_kib"), BOUNDS["argon2_memory_kib"], f"{where}.memory_kib")
        within(kdf.get("iterations"), BOUNDS["argon2_iterations"], f"{where}.iterations")
        within(kdf.get("parallelism"), BOUNDS["argon2_parallelism"], f"{where}.parallelism")
        if kdf["memory_kib"] * kdf["iterations"] > BOUNDS["argon2_max_work_kib"]:
            raise Refused(f"{where}: memory_kib x iterations is too large")
    else:
        raise Refused(f"{where}.algorithm {algorithm!r} is unknown")
    return kdf


def check_salt(text: str, where: str) -> bytes:
    salt = b64(text, where)
    within(len(salt), BOUNDS["salt_len"], f"{where} length")
    return salt


def derive(kdf: dict, secret: bytes, salt: bytes) -> bytes:
    """The document's "Deriving a purpose key"."""
    if kdf["algorithm"] == "PBKDF2-HMAC-SHA256":
        return hashlib.pbkdf2_hmac("sha256", secret, salt, kdf["iterations"], dklen=32)
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(
        secret=secret,
        salt=salt,
        time_cost=kdf["iterations"],
        memory_cost=kdf["memory_kib"],
        parallelism=kdf["parallelism"],
        hash_len=32,
        type=Type.ID,
        version=0x13,
    )


def read_security(data_dir: str) -> dict:
    path = os.path.join(data_dir, "security.json")
    if os.path.getsize(path) > 64 * 1024:
        raise Refused("security.json is larger than 64 KiB")
    with open(path, "rb") as f:
        doc = json.load(f)
    if set(doc) - {"format", "version", "created", "purposes"}:
        raise Refused("unknown top-level field")
    if doc.get("format") != "warden-security" or doc.get("version") != 1:
        raise Refused("not a version 1 warden-security file")
    if set(doc.get("purposes", {})) != set(PURPOSES):
        raise Refused("purposes must be exactly database, recordings, config, audit")
    for p in PURPOSES:
        entry = doc["purposes"][p]
        check_kdf(entry["kdf"], f"{p}.kdf")
        check_salt(entry["salt"], f"{p}.salt")
        if len(b64(entry["key_check"], f"{p}.key_check")) != 32:
            raise Refused(f"{p}.key_check is not 32 bytes")
    return doc


def purpose_keys(doc: dict, passphrase: bytes) -> dict:
    keys = {}
    for p in PURPOSES:
        entry = doc["purposes"][p]
        key = derive(entry["kdf"], passphrase, b64(entry["salt"], "salt"))
        check = hmac.new(key, b"warden key check v1" + b"\x00" + p.encode("ascii"), hashlib.sha256)
        if not hmac.compare_digest(check.digest(), b64(entry["key_check"], "key_check")):
            raise Refused(f"wrong passphrase for the {p} key")
        keys[p] = key
    return keys


def open_database(data_dir: str, key: bytes) -> dict:
    import sqlcipher3

    conn = sqlcipher3.connect(os.path.join(data_dir, "state", "warden.db"))
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA cipher_compatibility = 4")
    if conn.execute("PRAGMA cipher_version").fetchone() is None:
        raise Refused("this sqlite has no SQLCipher")
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    conn.close()
    return {"application_id": app_id, "tables": tables}


def open_config(path: str, key: bytes) -> bytes:
    from cryptography.fernet import Fernet

    with open(path, "rb") as f:
        token = f.read().strip()
    if not token.startswith(b"gAAAAA"):
        raise Refused("the configuration does not look sealed")
    return Fernet(base64.urlsafe_b64encode(key)).decrypt(token)


def open_auditor_key(path: str, passphrase: bytes) -> dict:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with open(path, "rb") as f:
        doc = json.load(f)
    fields = {"format", "version", "chain_id", "key_id", "kdf", "salt", "sealed_key"}
    if set(doc) != fields:
        raise Refused("auditor key file fields differ from the document")
    if doc["format"] != "warden-auditor-key" or doc["version"] != 1:
        raise Refused("not a version 1 warden-auditor-key file")
    chain_id = bytes.fromhex(doc["chain_id"])
    if len(chain_id) != 16 or len(doc["key_id"]) != 16:
        raise Refused("chain_id or key_id has the wrong length")
    kdf = check_kdf(doc["kdf"], "kdf")
    sealing_key = derive(kdf, passphrase, check_salt(doc["salt"], "salt"))
    sealed = b64(doc["sealed_key"], "sealed_key")
    if len(sealed) != 12 + 32 + 16:
        raise Refused("sealed_key is not nonce + 32 bytes + tag")
    k0 = AESGCM(sealing_key).decrypt(sealed[:12], sealed[12:], b"warden auditor key v1" + chain_id)
    key_id = hmac.new(k0, b"warden-audit-key-id-v1", hashlib.sha256).digest()[:8].hex()
    if key_id != doc["key_id"]:
        raise Refused("key_id does not match the sealed key")
    return {"chain_id": doc["chain_id"], "key_id": key_id, "k0": k0.hex()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir", nargs="?")
    p.add_argument("passphrase_file", nargs="?")
    p.add_argument("--config")
    p.add_argument("--config-plain")
    p.add_argument("--auditor-key")
    p.add_argument("--auditor-passphrase-file")
    p.add_argument("--bounds", action="store_true")
    args = p.parse_args(argv)
    if args.bounds:
        print(json.dumps(BOUNDS))
        return 0
    try:
        doc = read_security(args.data_dir)
        keys = purpose_keys(doc, first_line(args.passphrase_file))
        out = {
            "keys": {p: k.hex() for p, k in keys.items()},
            "kdf": doc["purposes"]["database"]["kdf"]["algorithm"],
            "database": open_database(args.data_dir, keys["database"]),
            "fernet_key": base64.urlsafe_b64encode(keys["config"]).decode("ascii"),
        }
        if args.config:
            plain = open_config(args.config, keys["config"])
            with open(args.config_plain, "rb") as f:
                out["config_matches"] = plain == f.read()
        if args.auditor_key:
            out["auditor"] = open_auditor_key(
                args.auditor_key, first_line(args.auditor_passphrase_file)
            )
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
