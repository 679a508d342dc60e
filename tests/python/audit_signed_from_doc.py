#!/usr/bin/env python3
"""Checks warden's signed audit checkpoints with the public key alone, written from
docs/formats/audit-chain.md ("Canonical encoding", "Signed checkpoints") — no MAC key, no warden code.

    audit_signed_from_doc.py EXPORT.jsonl PUBLIC_KEY_HEX

EXPORT.jsonl is `warden audit export --format jsonl`. Prints one JSON object:
{"status": "ok", "signed_checkpoints": N, "covered": SEQ} or {"status": "failed", "seq": S, "reason": ...}
(exit 3).
"""

import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def canonical(row: dict) -> bytes:
    out = b"warden-audit-v1" + struct.pack(">QI", row["seq"], row["epoch"])
    for field in ("timestamp", "actor", "action", "subject", "outcome", "details"):
        data = row[field].encode("utf-8")
        out += struct.pack(">I", len(data)) + data
    return out


def main(argv) -> int:
    export, key_hex = argv[1], argv[2]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
    header, events, signed = None, [], []
    with open(export) as f:
        for line in f:
            value = json.loads(line)
            if value.get("type") == "warden-audit-export":
                header = value
            elif value.get("type") == "event":
                events.append(value)
            elif value.get("type") == "signed-checkpoint":
                signed.append(value)
    chain_id = bytes.fromhex(header["chain_id"])
    digest = hashlib.sha256(b"warden-audit-digest-v1" + chain_id).digest()
    digests, macs = {}, {}
    for expected, row in enumerate(sorted(events, key=lambda r: r["seq"]), start=1):
        if row["seq"] != expected:
            break
        mac = bytes.fromhex(row["mac"])
        digest = hashlib.sha256(digest + canonical(row) + mac).digest()
        digests[row["seq"]], macs[row["seq"]] = digest, mac
    for c in sorted(signed, key=lambda c: c["seq"]):
        seq = c["seq"]
        message = (b"warden-audit-checkpoint-v1" + chain_id + struct.pack(">Q", seq)
                   + bytes.fromhex(c["mac"]) + bytes.fromhex(c["digest"]))
        try:
            public.verify(bytes.fromhex(c["signature"]), message)
        except InvalidSignature:
            print(json.dumps({"status": "failed", "seq": seq, "reason": "bad signature"}))
            return 3
        if seq not in digests:
            print(json.dumps({"status": "failed", "seq": seq, "reason": "rows missing"}))
            return 3
        if digests[seq].hex() != c["digest"] or macs[seq].hex() != c["mac"]:
            print(json.dumps({"status": "failed", "seq": seq, "reason": "rows differ from what was signed"}))
            return 3
    covered = max((c["seq"] for c in signed), default=0)
    print(json.dumps({"status": "ok", "signed_checkpoints": len(signed), "covered": covered}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
