#!/usr/bin/env bash
# Identity benchmarks, all in one run: TOTP verification (warden-core, criterion), a whole shim
# sign-in in the store (warden-store, criterion: SQLCipher, audit event, fsync), and Argon2id
# password verification at seed 002's parameters (t=3, m=64 MiB, p=4) in warden next to
# Debian's `argon2` reference command line with the same parameters. Prints Markdown for the
# "Identity" section of docs/BENCHMARKS.md.
#
#   scripts/bench/identity.sh            (RUNS=N repetitions of the argon2 CLI, default 10;
#                                         WARDEN_BENCH_DIR=DIR for the store bench, default /tmp)
# Implements: S4
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${RUNS:-10}"
command -v argon2 >/dev/null || { echo "the argon2 command is missing: apt-get install argon2" >&2; exit 1; }
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT

# criterion prints "name\n   time:   [low estimate high]"; keep name and estimate.
criterion() {
  awk '/^[A-Za-z0-9_\/]+( |$)/ && !/time:/ {name=$1} /time:/ {print name, $(NF-3), $(NF-2)}'
}

cargo bench -q -p warden-core --bench identity 2>/dev/null | tee "$OUT/core.txt" >/dev/null
cargo bench -q -p warden-store --bench identity 2>/dev/null | tee "$OUT/store.txt" >/dev/null

# The reference implementation: same password, 16-byte salt, 32-byte hash, Argon2id v1.3.
for _ in $(seq "$RUNS"); do
  echo -n 'Correct-Horse-Battery-9' | argon2 saltsaltsaltsalt -id -t 3 -k 65536 -p 4 -l 32 \
    | awk '/seconds/ {print $1}'
done | sort -n > "$OUT/cli.txt"
# ... and warden verifies the reference's hash (same algorithm, not just the same cost).
encoded=$(echo -n 'Correct-Horse-Battery-9' | argon2 saltsaltsaltsalt -id -t 3 -k 65536 -p 4 -l 32 -e)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "rustc: $(rustc --version); argon2 CLI: Debian package $(dpkg-query -W -f='${Version}' argon2 2>/dev/null || echo '?')"
echo "store bench directory: ${WARDEN_BENCH_DIR:-/tmp} ($(df -T "${WARDEN_BENCH_DIR:-/tmp}" | awk 'NR==2 {print $2}'))"
echo "reference hash from the argon2 CLI: $encoded"
echo
echo "| measurement | time |"
echo "|---|---:|"
criterion < "$OUT/core.txt" | while read -r name value unit; do
  echo "| warden-core \`$name\` | $value $unit |"
done
criterion < "$OUT/store.txt" | while read -r name value unit; do
  echo "| warden-store \`$name\` | $value $unit |"
done
awk -v runs="$RUNS" '{v[NR]=$1} END {
  printf "| `argon2 saltsaltsaltsalt -id -t 3 -k 65536 -p 4 -l 32` (Debian CLI), median of %d | %.1f ms |\n", runs, 1000*v[int((NR+1)/2)];
  printf "| same, best of %d | %.1f ms |\n", runs, 1000*v[1] }' "$OUT/cli.txt"
