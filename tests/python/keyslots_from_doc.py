#!/usr/bin/env python3
"""An independent reader of warden's key slots, written from docs/formats/keyslots.md alone.

Uses only the Python standard library, `cryptography` (P-256 ECDH, HKDF-SHA256, AES-256-GCM),
`argon2-cffi` (Argon2id) and `sqlcipher3` (to open the database with the unwrapped key).

    keyslots_from_doc.py --vector docs/formats/keyslots-v1.json
        Rebuilds every derived value of the known-answer vector from its inputs and checks it.

    keyslots_from_doc.py DATA_DIR (--passphrase-file F | --recovery-key-file F
                                   | --user NAME --password-file F | --service-key-file F --service KIND)
        Unlocks that slot, unwraps and checks every key it carries, opens the SQLCipher database
        with the `database` key, and prints one JSON object:
        {"owner", "holder", "keys": {name: hex}, "database": {...}} — with the `audit` key, the
        database part carries the chain's epoch and the key id of its sealed epoch key
        (docs/formats/audit-chain.md); exit code 3 if the file does not match its digest.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEYS = ("database", "recordings", "config", "audit", "signing", "phi")
HOLDERS = {
    "all": KEYS,
    "administrator": KEYS,
    "operator": ("database", "recordings", "audit", "phi"),
    "auditor": ("database", "recordings", "audit", "phi"),
    "shim": ("database", "recordings", "config", "audit", "signing"),
    "ota": ("database", "config", "audit", "signing"),
}


class SlotError(Exception):
    pass


class WrongSecret(SlotError):
    pass


class Damaged(SlotError):
    pass


def read_file(raw: bytes) -> dict:
    """Parses keyslots.json and checks its `digest`: SHA-256 of the file's bytes with the
    digest's 64 hex digits (found exactly once) replaced by 64 "0" characters."""
    doc = json.loads(raw)
    digest = doc.get("digest")
    if digest is None:
        return doc  # a file written before the digest
    value = digest.encode("ascii")
    if len(value) != 64 or any(c not in b"0123456789abcdef" for c in value) or raw.count(value) != 1:
        raise Damaged("the digest is not 64 lowercase hex digits found once")
    if hashlib.sha256(raw.replace(value, b"0" * 64)).hexdigest() != digest:
        raise Damaged("the file does not match its digest")
    return doc


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def key_check(key: bytes, name: str) -> bytes:
    return hmac.new(key, b"warden key check v1" + b"\x00" + name.encode(), hashlib.sha256).digest()


def lookup_id(lookup_salt: bytes, name: str) -> str:
    mac = hmac.new(lookup_salt, b"warden keyslot user v1" + b"\x00" + name.lower().encode(), hashlib.sha256)
    return mac.digest()[:16].hex()


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def stretch(kdf: dict, secret: bytes, salt: bytes) -> bytes:
    if kdf["algorithm"] == "PBKDF2-HMAC-SHA256":
        return hashlib.pbkdf2_hmac("sha256", secret, salt, int(kdf["iterations"]), dklen=32)
    if kdf["algorithm"] == "Argon2id":
        from argon2.low_level import Type, hash_secret_raw

        return hash_secret_raw(
            secret=secret, salt=salt, time_cost=int(kdf["iterations"]),
            memory_cost=int(kdf["memory_kib"]), parallelism=int(kdf["parallelism"]),
            hash_len=32, type=Type.ID, version=0x13,
        )
    raise SlotError(f"{kdf['algorithm']} is not a passphrase KDF")


def kek(slot: dict, secret: bytes) -> bytes:
    salt = b64(slot["salt"])
    if slot["kdf"]["algorithm"] == "HKDF-SHA256":
        if len(secret) != 32:
            raise SlotError("a recovery or service key is 32 bytes")
        return hkdf(secret, salt, b"warden keyslot kek v1" + b"\x00" + slot["id"].encode())
    return stretch(slot["kdf"], secret, salt)


def private_key_aad(slot: dict) -> bytes:
    return (b"warden keyslot private key v1" + b"\x00" + slot["id"].encode() + b"\x00"
            + slot["owner"].encode() + b"\x00" + slot["holder"].encode() + b"\x00"
            + b64(slot["public_key"]))


def wrap_info(slot_id: str, purpose: str, version: int) -> bytes:
    return (b"warden keyslot wrap v1" + b"\x00" + slot_id.encode() + b"\x00" + purpose.encode()
            + b"\x00" + struct.pack(">I", version))


def point(data: bytes) -> ec.EllipticCurvePublicKey:
    if len(data) != 65 or data[0] != 4:
        raise SlotError("not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)


def public_bytes(private: ec.EllipticCurvePrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def scalar(data: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(data, "big"), ec.SECP256R1())


def open_private(slot: dict, secret: bytes) -> ec.EllipticCurvePrivateKey:
    sealed = b64(slot["sealed_private_key"])
    if len(sealed) != 60:
        raise SlotError("sealed_private_key is not 60 bytes")
    try:
        d = AESGCM(kek(slot, secret)).decrypt(sealed[:12], sealed[12:], private_key_aad(slot))
    except Exception as exc:  # InvalidTag
        raise WrongSecret(f"the secret does not open slot {slot['id']}") from exc
    private = scalar(d)
    if public_bytes(private) != b64(slot["public_key"]):
        raise SlotError("the private key does not match the public key")
    return private


def unwrap(slot: dict, private: ec.EllipticCurvePrivateKey, wrap: dict) -> bytes:
    w = b64(wrap["wrap"])
    if len(w) != 125:
        raise SlotError("a wrap is not 125 bytes")
    ephemeral = w[:65]
    shared = private.exchange(ec.ECDH(), point(ephemeral))
    info = wrap_info(slot["id"], wrap["purpose"], int(wrap["version"]))
    wk = hkdf(shared, ephemeral + b64(slot["public_key"]), info)
    return AESGCM(wk).decrypt(w[65:77], w[77:], info)


def unlock(doc: dict, slot: dict, secret: bytes) -> dict:
    """Returns {name: (version, key)} for every key the slot carries, checked."""
    if doc.get("format") != "warden-keyslots" or doc.get("version") != 1:
        raise SlotError("not a keyslots.json version 1")
    private = open_private(slot, secret)
    carried = HOLDERS[slot["holder"]]
    out = {}
    for wrap in slot["wraps"]:
        name, version = wrap["purpose"], int(wrap["version"])
        if name not in carried:
            raise SlotError(f"a {slot['holder']} slot does not carry `{name}`")
        key = unwrap(slot, private, wrap)
        info = doc["keys"][name]
        expected = info["check"] if info["version"] == version else info.get("next", {}).get("check")
        if expected is None or not hmac.compare_digest(key_check(key, name), b64(expected)):
            raise SlotError(f"`{name}` does not match its key check")
        if name == "signing":
            listed = info if info["version"] == version else info["next"]
            if b64(listed["public_key"]) != ed25519_public(key):
                raise SlotError("the signing key's public_key is not the seed's")
        if info["version"] == version:
            out[name] = (version, key)
    if set(out) != set(carried):
        raise SlotError("the slot does not carry every key of its holder")
    return out


def ed25519_public(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def find_slot(doc: dict, owner: str) -> list:
    return [s for s in doc["slots"] if s["owner"] == owner]


def first_line(path: str) -> bytes:
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    return text.replace("\r", "\n").split("\n")[0].encode("utf-8")


def hex_key(path: str) -> bytes:
    with open(path, "rb") as f:
        text = f.read().decode("ascii")
    digits = "".join(c for c in text if not c.isspace() and c != "-")
    return bytes.fromhex(digits)


def open_database(data_dir: str, key: bytes, audit_key: bytes | None = None) -> dict:
    import sqlcipher3

    conn = sqlcipher3.connect(os.path.join(data_dir, "state", "warden.db"))
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA cipher_compatibility = 4")
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    users = [row[0] for row in conn.execute("SELECT username FROM users ORDER BY username")]
    events = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    out = {"application_id": app_id, "tables": tables, "users": users, "audit_events": events}
    if audit_key is not None:
        # The chain's current epoch key, sealed under the `audit` key (audit-chain.md, "What
        # the box stores"); AES-GCM fails unless key, label and layout are as documented.
        chain_id, epoch, sealed = conn.execute(
            "SELECT chain_id, epoch, key_sealed FROM audit_state WHERE id = 1").fetchone()
        label = b"warden audit epoch key v1" + bytes(chain_id) + struct.pack(">I", epoch)
        sealed = bytes(sealed)
        k = AESGCM(audit_key).decrypt(sealed[:12], sealed[12:], label)
        out["epoch"] = epoch
        out["epoch_key_id"] = hmac.new(k, b"warden-audit-key-id-v1", hashlib.sha256).digest()[:8].hex()
    conn.close()
    return out


def check_vector(path: str) -> dict:
    with open(path) as f:
        vector = json.load(f)
    doc = read_file(vector["file_text"].encode("utf-8"))
    assert doc == vector["file"], "file_text is the file"
    keys = {name: bytes.fromhex(h) for name, h in vector["purpose_keys"].items()}
    lookup_salt = b64(doc["lookup_salt"])
    assert lookup_id(lookup_salt, vector["user"]["name"]) == vector["user"]["lookup_id"]
    for name, key in keys.items():
        assert b64(doc["keys"][name]["check"]) == key_check(key, name), name
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signing_public = Ed25519PrivateKey.from_private_bytes(keys["signing"]).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    assert b64(doc["keys"]["signing"]["public_key"]) == signing_public
    rebuilt = 0
    for inputs, slot in zip(vector["slots"], doc["slots"]):
        assert inputs["slot"] == slot["id"]
        private = scalar(bytes.fromhex(inputs["private_key"]))
        assert public_bytes(private) == b64(slot["public_key"])
        k = kek(slot, inputs["secret"].encode())
        assert k.hex() == inputs["kek"], "KEK"
        aad = private_key_aad(slot)
        assert aad.hex() == inputs["private_key_aad"]
        nonce = bytes.fromhex(inputs["seal_nonce"])
        sealed = nonce + AESGCM(k).encrypt(nonce, bytes.fromhex(inputs["private_key"]), aad)
        assert sealed == b64(slot["sealed_private_key"]), "sealed private key"
        for wrap_in, wrap in zip(inputs["wraps"], slot["wraps"]):
            assert wrap_in["purpose"] == wrap["purpose"]
            e = scalar(bytes.fromhex(wrap_in["ephemeral_private_key"]))
            big_e = public_bytes(e)
            shared = e.exchange(ec.ECDH(), point(b64(slot["public_key"])))
            info = wrap_info(slot["id"], wrap["purpose"], wrap["version"])
            assert info.hex() == wrap_in["info"]
            wk = hkdf(shared, big_e + b64(slot["public_key"]), info)
            w_nonce = bytes.fromhex(wrap_in["nonce"])
            w = big_e + w_nonce + AESGCM(wk).encrypt(w_nonce, keys[wrap["purpose"]], info)
            assert w == b64(wrap["wrap"]), f"wrap of {wrap['purpose']}"
            rebuilt += 1
        opened = unlock(doc, slot, inputs["secret"].encode())
        for name, (_, key) in opened.items():
            assert key == keys[name], name
    return {"vector": "ok", "wraps_rebuilt": rebuilt, "slots": len(doc["slots"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir", nargs="?")
    p.add_argument("--vector")
    p.add_argument("--passphrase-file")
    p.add_argument("--recovery-key-file")
    p.add_argument("--user")
    p.add_argument("--password-file")
    p.add_argument("--service")
    p.add_argument("--service-key-file")
    p.add_argument("--no-database", action="store_true")
    args = p.parse_args(argv)
    if args.vector:
        print(json.dumps(check_vector(args.vector)))
        return 0
    with open(os.path.join(args.data_dir, "keyslots.json"), "rb") as f:
        try:
            doc = read_file(f.read())
        except Damaged as exc:
            print(json.dumps({"error": f"damaged: {exc}"}))
            return 3
    if args.passphrase_file:
        owner, secret = "master", first_line(args.passphrase_file)
    elif args.recovery_key_file:
        owner, secret = "recovery", hex_key(args.recovery_key_file)
    elif args.user:
        owner = "user:" + lookup_id(b64(doc["lookup_salt"]), args.user)
        secret = first_line(args.password_file)
    elif args.service:
        owner, secret = "service:" + args.service, hex_key(args.service_key_file)
    else:
        p.error("say which slot to unlock")
    slots = find_slot(doc, owner)
    if not slots:
        print(json.dumps({"error": f"no slot for {owner}"}))
        return 2
    last = None
    for slot in slots:
        try:
            opened = unlock(doc, slot, secret)
            break
        except WrongSecret as exc:
            last = exc
    else:
        print(json.dumps({"error": str(last)}))
        return 4
    out = {
        "owner": owner,
        "holder": slot["holder"],
        "keys": {name: key.hex() for name, (_, key) in opened.items()},
    }
    if "database" in opened and not args.no_database:
        audit = opened["audit"][1] if "audit" in opened else None
        out["database"] = open_database(args.data_dir, opened["database"][1], audit)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
