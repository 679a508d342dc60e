#!/usr/bin/env python3
"""Independent decoder for warden session recordings, written from
docs/formats/session-recording.md alone (standard library only).

Usage: decode_recording.py FILE
Prints one JSON object per line: the metadata, then each chunk
({"t_us", "direction", "hex"}), then {"end": t_us}; or exits 2 with
"ERROR <kind>" on stderr for a recording that breaks the rules.
"""
import json
import re
import struct
import sys

MAGIC = b"WRDNRCRD"
DIRECTIONS = {1: "tech_to_device", 2: "device_to_tech", 3: "event"}
FIELDS = ["session_id", "technician_id", "device_name", "shim_id", "started_at", "config_hash"]


class Bad(Exception):
    pass


def decode(data):
    if data[:8] != MAGIC[:len(data)]:
        raise Bad("magic")
    if len(data) < 9:
        raise Bad("cut_off")
    if data[8] != 1:
        raise Bad("version")
    pos = 9
    out = []
    last_t = 0
    first = True
    while True:
        if pos == len(data):
            raise Bad("missing_end" if not first else "cut_off")
        if len(data) - pos < 5:
            raise Bad("cut_off")
        kind, length = struct.unpack(">BI", data[pos:pos + 5])
        limits = {1: (1, 65536), 2: (9, 65545), 3: (8, 8)}
        if kind not in limits:
            raise Bad("type")
        low, high = limits[kind]
        if not low <= length <= high:
            raise Bad("length")
        body = data[pos + 5:pos + 5 + length]
        if len(body) < length:
            raise Bad("cut_off")
        pos += 5 + length
        if first:
            if kind != 1:
                raise Bad("metadata_first")
            meta = json.loads(body.decode("utf-8"))
            for f in FIELDS:
                if not isinstance(meta.get(f), str):
                    raise Bad("metadata")
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", meta["started_at"]):
                raise Bad("metadata")
            if not re.fullmatch(r"[0-9a-f]{64}", meta["config_hash"]):
                raise Bad("metadata")
            out.append({f: meta[f] for f in FIELDS})
            first = False
            continue
        if kind == 1:
            raise Bad("metadata_twice")
        (t_us,) = struct.unpack(">Q", body[:8])
        if t_us < last_t:
            raise Bad("time")
        last_t = t_us
        if kind == 3:
            if pos != len(data):
                raise Bad("trailing")
            out.append({"end": t_us})
            return out
        if body[8] not in DIRECTIONS:
            raise Bad("direction")
        out.append({"t_us": t_us, "direction": DIRECTIONS[body[8]], "hex": body[9:].hex()})


def main():
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    try:
        lines = decode(data)
    except Bad as e:
        print("ERROR", e, file=sys.stderr)
        return 2
    for line in lines:
        print(json.dumps(line, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
