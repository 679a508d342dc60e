#!/usr/bin/env python3
"""Independent reference for warden's audit chain (docs/formats/audit-chain.md), stdlib only.

Written from the format document, not from the Rust code. Run it to regenerate
audit-chain-v1.json (the known-answer vectors the Rust tests check) and to see a straight-line
verifier: `python3 audit_chain_reference.py > audit-chain-v1.json`.
"""
import hashlib
import hmac
import json
import struct
import sys

DOMAIN_TAG = b"warden-audit-v1"
GENESIS_LABEL = b"warden-audit-genesis-v1"
EVOLVE_LABEL = b"warden-audit-evolve-v1"
KEY_ID_LABEL = b"warden-audit-key-id-v1"


def hmac_sha256(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def canonical_details(obj):
    # Sorted keys, no whitespace, non-ASCII raw. (Integers and strings only here; floats are
    # printed by the writer and never re-canonicalized by a verifier.)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row):
    out = DOMAIN_TAG + struct.pack(">QI", row["seq"], row["epoch"])
    for name in ("timestamp", "actor", "action", "subject", "outcome", "details"):
        data = row[name].encode("utf-8")
        out += struct.pack(">I", len(data)) + data
    return out


def genesis_mac(k0, chain_id):
    return hmac_sha256(k0, GENESIS_LABEL, chain_id)


def evolve(key):
    return hmac_sha256(key, EVOLVE_LABEL)


def key_id(key):
    return hmac_sha256(key, KEY_ID_LABEL)[:8]


def marker_details(next_epoch, next_key_id):
    return '{"next_epoch":%d,"next_key_id":"%s"}' % (next_epoch, next_key_id.hex())


class Writer:
    def __init__(self, k0, chain_id):
        self.key, self.epoch, self.seq = k0, 0, 1
        self.last = genesis_mac(k0, chain_id)
        self.rows = []

    def append(self, timestamp, actor, action, subject, outcome, details_text):
        row = dict(seq=self.seq, epoch=self.epoch, timestamp=timestamp, actor=actor,
                   action=action, subject=subject, outcome=outcome, details=details_text)
        enc = canonical(row)
        row["canonical"] = enc.hex()
        row["mac"] = hmac_sha256(self.key, enc, self.last).hex()
        self.last = bytes.fromhex(row["mac"])
        self.seq += 1
        self.rows.append(row)
        return row

    def evolve(self, timestamp):
        nxt = evolve(self.key)
        self.append(timestamp, "warden", "audit.epoch", "", "success",
                    marker_details(self.epoch + 1, key_id(nxt)))
        self.key, self.epoch = nxt, self.epoch + 1


def verify(rows, k0, chain_id):
    """Straight-line verification from genesis: returns the first bad seq, or None."""
    key, epoch, prev, expect = k0, 0, genesis_mac(k0, chain_id), 1
    for row in rows:
        probe = dict(row, seq=expect, epoch=epoch)
        mac = hmac_sha256(key, canonical(probe), prev)
        if not hmac.compare_digest(mac.hex(), row["mac"]) or row["seq"] != expect \
                or row["epoch"] != epoch:
            return expect
        prev, expect = mac, expect + 1
        if row["action"] == "audit.epoch":
            nxt = evolve(key)
            if row["details"] != marker_details(epoch + 1, key_id(nxt)):
                return expect  # key mismatch: the next epoch's key is not the committed one
            key, epoch = nxt, epoch + 1
    return None


def main():
    k0 = bytes(range(32))
    chain_id = bytes(range(0xA0, 0xB0))
    w = Writer(k0, chain_id)
    genesis = w.last
    w.append("2026-11-22T10:00:00.123456Z", "alice", "session.open", "shim-01/ttyS0", "success",
             canonical_details({"mfa": "totp", "device": "laser-7"}))
    w.evolve("2026-11-22T10:05:00.000000Z")
    w.append("2026-11-22T10:06:30.500000Z", "bob", "login.totp", "shim-01", "denied",
             canonical_details({"reason": "bad code", "attempt": 3, "note": "Gerät ü"}))
    assert verify(w.rows, k0, chain_id) is None
    tampered = [dict(r) for r in w.rows]
    tampered[0]["actor"] = "mallory"
    assert verify(tampered, k0, chain_id) == 1
    k1 = evolve(k0)
    json.dump({
        "k0": k0.hex(),
        "chain_id": chain_id.hex(),
        "genesis_mac": genesis.hex(),
        "k0_key_id": key_id(k0).hex(),
        "k1": k1.hex(),
        "k1_key_id": key_id(k1).hex(),
        "rows": w.rows,
        "checkpoint": {"seq": w.rows[-1]["seq"], "mac": w.rows[-1]["mac"]},
    }, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
