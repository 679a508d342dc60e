"""Seed 002's treatment, played from Python as the application would, and checked with
independent tools: sqlcipher3 (the database holds no PHI in clear; version hashes recomputed
from the rows match the audit chain) and tests/python/sealed_stream.py (the recording written
frame by frame decodes).

Needs the `warden` binary ($WARDEN_BIN, default target/debug/warden) to set the data directory
up, and the `warden` package installed (scripts/build-python.sh --install). With CI set, a
missing tool fails the suite instead of skipping it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

PASSPHRASE = "python records test passphrase, long enough"
ADMIN_PW = "Python-Admin-Password-1"
OPERATOR_PW = "Python-Operator-Pass-2"
AUDITOR_PW = "Python-Auditor-Pass-03"
FAST_POLICY = (
    '{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},'
    '"backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}'
)
SCHEMA = """
format: warden-records-schema
collections:
  patients:
    class: phi
    fields:
      mrn: { type: text, required: true }
      name: { type: text }
      dob: { type: date }
  treatments:
    class: treatment
    fields:
      patient: { type: text, required: true }
      wavelength_nm: { type: integer }
      energy_j: { type: number }
      parameters: { type: json }
      outcome: { type: text, phi: true }
      notes: { type: text, phi: true }
  calibrations:
    class: calibration
    fields:
      output_mw: { type: number, required: true }
"""


def need(condition: bool, what: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{what} (required when CI is set)")
        pytest.skip(what)


def private(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    warden_bin = Path(os.environ.get("WARDEN_BIN", REPO / "target" / "debug" / "warden"))
    need(warden_bin.exists(), f"the warden binary at {warden_bin}")
    try:
        import warden  # noqa: F401
    except ImportError:
        need(False, "the warden package (scripts/build-python.sh --install)")
    import pyotp

    tmp = tmp_path_factory.mktemp("records")
    data = tmp / "data"
    passphrase = private(tmp / "passphrase", PASSPHRASE)
    admin_pw = private(tmp / "admin-pw", ADMIN_PW)
    private(tmp / "auditor-pp", "python auditor passphrase, long enough")
    (tmp / "policy.json").write_text(FAST_POLICY)
    schema = tmp / "schema.yaml"
    schema.write_text(SCHEMA)

    def run(*args, password_file=None, who=None, env=None):
        cmd = [str(warden_bin), "--data-dir", str(data), "--passphrase-file", str(passphrase)]
        if who:
            cmd += ["--as", who, "--password-file", str(password_file)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        full_env.update(env or {})
        out = subprocess.run(cmd + list(args), capture_output=True, text=True, env=full_env)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return out.stdout

    run("--auditor-passphrase-file", str(tmp / "auditor-pp"), "init", "--kdf-iterations", "1000",
        "--admin", "admin", "--admin-password-file", str(admin_pw),
        "--identity-policy", str(tmp / "policy.json"))
    admin = dict(who="admin", password_file=admin_pw)
    op_pw = private(tmp / "op-pw", OPERATOR_PW)
    added = json.loads(run("user", "add", "olga", "--role", "operator", "--new-password-file",
                           str(op_pw), "--enroll-totp", "--no-qr", "--json", **admin))
    aud_pw = private(tmp / "aud-pw", AUDITOR_PW)
    run("user", "add", "audra", "--role", "auditor", "--new-password-file", str(aud_pw),
        "--no-qr", "--json", **admin)
    tech = json.loads(run("user", "add", "tess", "--role", "technician", "--no-qr", "--json",
                          **admin))
    run("records", "schema", "apply", str(schema), **admin)
    run("records", "signer", "olga", "--printed-name", "Olga Operator, MD", **admin)
    return {
        "data": data,
        "passphrase": passphrase,
        "olga_totp": pyotp.parse_uri(added["totp"]["uri"]),
        "tess_totp": pyotp.parse_uri(tech["totp"]["uri"]),
        "tmp": tmp,
    }


def code_at(totp, steps: int) -> str:
    return totp.at(int(time.time()) + 30 * steps)


def frames(count: int, size: int):
    for i in range(count):
        yield bytes([(i * 7 + j) % 251 for j in range(256)]) * (size // 256)


def test_a_treatment_from_python(setup):
    import warden

    vault = warden.open(setup["data"], passphrase_file=setup["passphrase"])
    olga = vault.sign_in("olga", OPERATOR_PW, totp=code_at(setup["olga_totp"], -1))
    assert (olga.username, olga.role, olga.has_phi) == ("olga", "operator", True)

    # The patient, and the treatment with its parameters.
    olga.put("patients", "p-0001", {"mrn": "MRN-778899", "name": "Jane Quinn Patient",
                                     "dob": "1961-07-04"})
    t1 = olga.put("treatments", "t-0001", {"patient": "p-0001", "wavelength_nm": 1064,
                                            "energy_j": 1.5, "parameters": {"pulses": 40}})
    assert (t1["version"], t1["kind"]) == (1, "create")

    # Events, as the laser reports them.
    armed = olga.event("laser.armed", "laser-7", {"treatment": "t-0001"})
    for n in range(3):
        olga.event("pulse.delivered", "laser-7", {"treatment": "t-0001", "pulse": n,
                                                  "energy_j": 1.5})

    # The video, frame by frame through the sealing writer: nothing at the path until closed.
    video_path = setup["tmp"] / "t-0001.video.sealed"
    plain = b""
    with olga.record(video_path) as video:
        for frame in frames(40, 16384):
            video.write(frame)
            plain += frame
            assert not video_path.exists()
    sealed = video.result
    assert sealed["plaintext_bytes"] == len(plain)
    assert video_path.exists()
    assert hashlib.sha256(video_path.read_bytes()).hexdigest() == sealed["sha256"]
    with olga.play(video_path) as playback:
        assert b"".join(playback) == plain

    # The outcome, and the signature with both components again.
    t2 = olga.put("treatments", "t-0001", {"outcome": "no adverse events",
                                            "notes": "patient tolerated well"})
    assert t2["version"] == 2
    with pytest.raises(warden.AuthenticationError):
        olga.sign("treatments", "t-0001", 2, "performed", password="Wrong-Password-123",
                  totp=code_at(setup["olga_totp"], 0))
    signed = olga.sign("treatments", "t-0001", 2, "performed", password=OPERATOR_PW,
                       totp=code_at(setup["olga_totp"], 1))
    assert signed["printed_name"] == "Olga Operator, MD"
    assert signed["manifestation"].startswith("Olga Operator, MD (olga), performed, ")

    record = olga.get("treatments", "t-0001")
    assert record["phi"]["outcome"] == "no adverse events"
    assert record["fields"]["energy_j"] == 1.5
    assert [s["status"] for s in record["signatures"]] == ["valid"]
    history = olga.history("treatments", "t-0001")
    assert [v["version"] for v in history] == [1, 2]
    assert history[0]["phi"] is None and "outcome" not in history[0]["fields"]

    # Errors keep their cause.
    with pytest.raises(warden.InvalidInput):
        olga.put("treatments", "t-0002", {"patient": "p-0001", "wavelength_nm": "red"})
    with pytest.raises(warden.NotFound):
        olga.get("treatments", "t-9999")
    with pytest.raises(warden.AccessDenied):
        olga.records_export(setup["tmp"] / "nope.jsonl")

    # The auditor verifies and exports, changing nothing.
    audra = vault.sign_in("audra", AUDITOR_PW)
    verdict = audra.records_verify()
    assert verdict["ok"], verdict["summary"]
    exported = audra.records_export(setup["tmp"] / "records.jsonl")
    assert exported["ok"] and exported["versions"] == 3
    lines = [json.loads(line) for line in (setup["tmp"] / "records.jsonl").read_text().splitlines()]
    treatment = [l for l in lines if l.get("id") == "t-0001" and l["version"] == 2][0]
    assert treatment["status"] == "verified"
    assert treatment["signatures"][0]["printed_name"] == "Olga Operator, MD"
    assert treatment["signatures"][0]["meaning"] == "performed"
    audit = audra.audit_export(setup["tmp"] / "audit.jsonl")
    assert audit["ok"]
    rows = [json.loads(l) for l in (setup["tmp"] / "audit.jsonl").read_text().splitlines()[1:]]
    actions = [r["action"] for r in rows]
    assert "app.laser.armed" in actions and actions.count("app.pulse.delivered") == 3
    assert [r for r in rows if r["seq"] == armed][0]["actor"] == "olga"
    assert "record.sign" in actions and "vault.seal" in actions and "record.read" in actions

    # A technician reaches calibration only.
    tess = vault.sign_in("tess", "", totp=code_at(setup["tess_totp"], 0))
    assert not tess.has_phi
    tess.put("calibrations", "cal-1", {"output_mw": 498.7})
    with pytest.raises(warden.AccessDenied):
        tess.get("patients", "p-0001")

    # Independent check 1: the recording decodes with the independent decoder.
    import sealed_stream
    key = _purpose_key(setup, "recordings")
    assert sealed_stream.decode(key, video_path.read_bytes()) == plain

    # Independent check 2: sqlcipher3 opens the database; no PHI in clear anywhere; the
    # version hashes recomputed from the rows are the ones in the audit events.
    import sqlcipher3
    conn = sqlcipher3.connect(str(setup["data"] / "state" / "warden.db"))
    conn.execute(f"PRAGMA key = \"x'{_purpose_key(setup, 'database').hex()}'\"")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    dump = "\n".join(
        repr(row) + " " + " ".join(bytes(v).decode("latin-1") for v in row
                                   if isinstance(v, (bytes, memoryview)))
        for table in tables for row in conn.execute(f"SELECT * FROM {table}"))
    assert "Jane" not in dump and "record_versions" in tables
    for phi in ("Jane Quinn Patient", "MRN-778899", "1961-07-04", "no adverse events",
                "tolerated well"):
        assert phi not in dump, phi
    versions = conn.execute(
        "SELECT collection, record_id, version, kind, ts, actor, schema_version, fields,"
        " phi_sealed, reason, hash, audit_seq FROM record_versions").fetchall()
    assert len(versions) == 4
    for (collection, rid, version, kind, ts, actor, sv, fields, sealed_phi, reason, stored,
         seq) in versions:
        h = hashlib.sha256(b"warden-record-v1")
        for part in (collection.encode(), rid.encode()):
            h.update(struct.pack(">I", len(part)) + part)
        h.update(struct.pack(">Q", version))
        for part in (kind.encode(), ts.encode(), actor.encode()):
            h.update(struct.pack(">I", len(part)) + part)
        h.update(struct.pack(">Q", sv))
        for part in (fields.encode(), bytes(sealed_phi or b""), reason.encode()):
            h.update(struct.pack(">I", len(part)) + part)
        assert h.digest() == bytes(stored)
        details = json.loads(conn.execute("SELECT details FROM audit_events WHERE seq = ?",
                                          (seq,)).fetchone()[0])
        assert details["hash"] == h.hexdigest()


def _purpose_key(setup, purpose: str) -> bytes:
    """The key, from keyslots.json and the master passphrase, by docs/formats/keyslots.md."""
    import keyslots_from_doc
    doc = json.loads((setup["data"] / "keyslots.json").read_text())
    (master,) = keyslots_from_doc.find_slot(doc, "master")
    return keyslots_from_doc.unlock(doc, master, PASSPHRASE.encode())[purpose][1]


def test_sealed_configuration_and_audit_verify(setup):
    import warden

    vault = warden.open(setup["data"], passphrase=PASSPHRASE)
    with pytest.raises(warden.AuthenticationError):
        vault.sign_in("admin", "Not-The-Password-1")
    admin = vault.sign_in("admin", ADMIN_PW)
    path = setup["tmp"] / "laser.yaml.sealed"
    admin.seal_config(b"max_energy_j: 4.0\n", path)
    assert b"max_energy_j" not in path.read_bytes()
    assert admin.open_config(path) == b"max_energy_j: 4.0\n"
    from cryptography.fernet import Fernet
    import base64
    key = base64.urlsafe_b64encode(_purpose_key(setup, "config"))
    assert Fernet(key).decrypt(path.read_bytes().strip()) == b"max_energy_j: 4.0\n"
    assert admin.audit_verify()["ok"]
    with pytest.raises(warden.WrongPassphrase):
        warden.open(setup["data"], passphrase="this is not the passphrase at all")


def test_people_sign_in_with_their_own_key_slots_without_the_master_passphrase(setup):
    import warden

    vault = warden.open(setup["data"])
    with pytest.raises(warden.AuthenticationError):
        vault.sign_in("audra", "Not-The-Password-1")
    audra = vault.sign_in("audra", AUDITOR_PW)
    # Her slot carries the phi key (auditors read PHI), and her records verify.
    assert audra.has_phi and audra.role == "auditor"
    assert audra.records_verify()["ok"]
    with pytest.raises(warden.AccessDenied):
        audra.seal_config(b"x: 1\n", setup["tmp"] / "nope.sealed")
    # Technicians have no password and so no slot: without the master passphrase, no session.
    with pytest.raises(warden.AuthenticationError):
        vault.sign_in("tess", "", totp=code_at(setup["tess_totp"], 1))
    # The refusals made without any key open reach the trail at the next open.
    again = warden.open(setup["data"], passphrase=PASSPHRASE).sign_in("audra", AUDITOR_PW)
    exported = again.audit_export(setup["tmp"] / "after.jsonl")
    assert exported["ok"]
    rows = [json.loads(l) for l in (setup["tmp"] / "after.jsonl").read_text().splitlines()[1:]]
    # audra's and tess's refusals from this test (made with no key open, recorded late).
    refused = [r for r in rows if r["action"] == "login.cli" and r["outcome"] == "failure"
               and r["subject"] in ("user:audra", "user:tess")]
    reasons = [json.loads(r["details"]).get("reason") for r in refused]
    assert "no_key_slot" in reasons and "bad_password" in reasons, reasons
