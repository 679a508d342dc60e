#!/usr/bin/env python3
"""Records from Python: writes and reads per second (with their audit events), and sealing a
video stream through the package's writer in MB/s against `warden vault seal` on the same
bytes. Usage: records-python.py WARDEN_BIN (a release build; the package installed)."""

import json, os, subprocess, sys, tempfile, time
from pathlib import Path

import pyotp
import warden

BIN = sys.argv[1]
tmp = Path(tempfile.mkdtemp())
data, pp = tmp / "data", tmp / "pp"
pp.write_text("python bench passphrase, long enough\n"); pp.chmod(0o600)
apw = tmp / "apw"; apw.write_text("Bench-Admin-Password-1\n"); apw.chmod(0o600)
opw = tmp / "opw"; opw.write_text("Bench-Operator-Pass-2\n"); opw.chmod(0o600)
aud = tmp / "aud"; aud.write_text("bench auditor passphrase, long enough\n"); aud.chmod(0o600)
env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
def run(*a, who=None, pw=None):
    cmd = [BIN, "--data-dir", str(data), "--passphrase-file", str(pp)]
    if who: cmd += ["--as", who, "--password-file", str(pw)]
    return subprocess.run(cmd + list(a), check=True, capture_output=True, text=True, env=env).stdout
policy = tmp / "policy.json"  # no spacing between one person's sign-ins (a benchmark signs in back to back)
policy.write_text('{"backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}')
run("--auditor-passphrase-file", str(aud), "init", "--kdf-iterations", "1000", "--admin", "admin", "--admin-password-file", str(apw), "--identity-policy", str(policy))
uri = json.loads(run("user", "add", "olga", "--role", "operator", "--new-password-file", str(opw), "--enroll-totp", "--no-qr", "--json", who="admin", pw=apw))["totp"]["uri"]
schema = tmp / "s.yaml"
schema.write_text("format: warden-records-schema\ncollections:\n  treatments:\n    class: treatment\n    fields:\n      patient: { type: text }\n      energy_j: { type: number }\n      outcome: { type: text }\n      notes: { type: text, phi: true }\n")
frame = os.urandom(1 << 20)  # 1 MiB frames, 256 MiB
plain = tmp / "video.raw"
with open(plain, "wb") as f:
    for _ in range(256): f.write(frame)
t = time.perf_counter()
subprocess.run([BIN, "--data-dir", str(data), "--passphrase-file", str(pp), "--as", "olga", "--password-file", str(opw), "--totp", pyotp.parse_uri(uri).now(), "vault", "seal", str(plain), str(tmp / "cli.sealed")], check=True, capture_output=True, env=env)
cli = 256 / (time.perf_counter() - t)
vault = warden.open(data, passphrase_file=pp)
vault.sign_in("admin", "Bench-Admin-Password-1").apply_schema(schema.read_text())
time.sleep(31)  # a fresh TOTP step for the next sign-in
olga = vault.sign_in("olga", "Bench-Operator-Pass-2", totp=pyotp.parse_uri(uri).now())
n = 2000
t = time.perf_counter()
for i in range(n):
    olga.put("treatments", f"t-{i}", {"patient": "p-1", "energy_j": 1.5, "outcome": "no adverse events"})
w = n / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(n):
    olga.get("treatments", f"t-{i}")
r = n / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(n):
    olga.put("treatments", f"p-{i}", {"patient": "p-1", "energy_j": 1.5, "notes": "tolerated well"})
wp = n / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(n):
    olga.get("treatments", f"p-{i}")
rp = n / (time.perf_counter() - t)
print(f"python: {n} record writes without PHI {w:.0f}/s, reads {r:.0f}/s; {n} writes with a PHI field (sealed) {wp:.0f}/s, reads opening it (each audited) {rp:.0f}/s")
t = time.perf_counter()
with olga.record(tmp / "py.sealed") as video:
    for _ in range(256): video.write(frame)
py = 256 / (time.perf_counter() - t)
print(f"sealing 256 MiB: Python writer {py:.0f} MiB/s (1 MiB writes); warden vault seal {cli:.0f} MiB/s (whole process, sign-in included)")
