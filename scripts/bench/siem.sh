#!/usr/bin/env bash
# SIEM benchmarks: spool append cost (criterion, on a SQLCipher database with WAL and
# synchronous=FULL) and end-to-end messages per second through the forwarder to a real rsyslog
# (TLS, x509/name) started by the test harness. Prints the figures for docs/BENCHMARKS.md.
#
#   scripts/bench/siem.sh            (WARDEN_BENCH_MESSAGES=20000 by default)
#   WARDEN_BENCH_DIR=/dev/shm scripts/bench/siem.sh   (criterion database in memory-backed files)
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "== spool append (criterion)"
cargo bench -q -p warden-store --bench spool 2>&1 | grep -E "^spool_append|time:|thrpt:"
echo "== forwarder to rsyslog"
cargo test -q --release -p warden-siem --test rsyslog -- --ignored --nocapture throughput_to_real_rsyslog 2>&1 \
  | grep -E "^(BENCH|SKIP)"
