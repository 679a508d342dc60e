#!/usr/bin/env bash
# End-to-end sealed-stream benchmark: seal / open / verify a 1 GiB file with the release binary,
# next to `openssl speed -evp aes-256-gcm` run in the same session, and the raw write speed of
# the same directory (dd). Prints a Markdown table for docs/BENCHMARKS.md.
#
#   scripts/bench/vault.sh [DIR]     (DIR defaults to /dev/shm, i.e. memory-backed files)
# Implements: V21
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-/dev/shm}/warden-bench-vault.$$"
SIZE_MIB="${SIZE_MIB:-1024}"
RUNS="${RUNS:-3}"
cargo build --release -q -p warden
W="$PWD/target/release/warden"
mkdir -p "$DIR" && trap 'rm -rf "$DIR"' EXIT
cd "$DIR"
printf 'benchmark-passphrase-0123456789\n' > pass && chmod 600 pass
printf 'Bench-Admin-Password-1\n' > admin-pass && chmod 600 admin-pass
printf 'benchmark-auditor-passphrase-42\n' > auditor && chmod 600 auditor
# Every command signs in: a cheap Argon2id and no spacing between sign-ins, so the figures
# measure the work, not the password hash or the attempt throttle.
printf '{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},"backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}' > policy.json
"$W" --data-dir data --passphrase-file pass --auditor-passphrase-file auditor \
  init --kdf-iterations 1000 --admin bench --admin-password-file admin-pass --identity-policy policy.json 2>/dev/null
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > plain.bin

# Best of RUNS: elapsed seconds and peak RSS (KiB).
best() {
  local label="$1"; shift
  local best_s="" best_kib=""
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o t.txt "$@" >/dev/null 2>&1
    read -r s kib < t.txt
    if [ -z "$best_s" ] || awk "BEGIN{exit !($s < $best_s)}"; then best_s=$s; best_kib=$kib; fi
  done
  echo "$label $best_s $best_kib"
}

openssl_bps=$(openssl speed -elapsed -seconds 3 -bytes 65536 -evp aes-256-gcm 2>/dev/null \
  | awk '/^AES-256-GCM/ {v=$NF; sub("k","",v); print v*1000}')
dd_line=$(dd if=plain.bin of=dd.out bs=1M 2>&1 | tail -1); rm -f dd.out

{
  AS=(--as bench --password-file admin-pass)
  best seal "$W" --data-dir data --passphrase-file pass "${AS[@]}" vault seal plain.bin sealed.bin --force
  best open "$W" --data-dir data --passphrase-file pass "${AS[@]}" vault open sealed.bin opened.bin --force
  best verify "$W" --data-dir data --passphrase-file pass "${AS[@]}" vault verify sealed.bin
  best seal-to-null sh -c "'$W' --data-dir data --passphrase-file pass vault seal plain.bin - > /dev/null"
  best open-to-null sh -c "'$W' --data-dir data --passphrase-file pass vault open sealed.bin - > /dev/null"
} > results.txt
cmp -s plain.bin opened.bin || { echo "round trip differs" >&2; exit 1; }

bytes=$((SIZE_MIB * 1024 * 1024))
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(openssl version)"
echo "directory: ${1:-/dev/shm}; file: ${SIZE_MIB} MiB; best of $RUNS runs"
echo "openssl speed -evp aes-256-gcm (64 KiB blocks, 1 core): $(awk -v b="$openssl_bps" 'BEGIN{printf "%.0f MB/s", b/1e6}')"
echo "dd copy of the same file in the same directory: $dd_line"
echo
echo "| operation | seconds | MB/s | ratio to openssl speed | peak RSS |"
echo "|---|---:|---:|---:|---:|"
while read -r label s kib; do
  awk -v l="$label" -v s="$s" -v k="$kib" -v b="$bytes" -v o="$openssl_bps" \
    'BEGIN{r=b/s; printf "| %s | %.2f | %.0f | %.2f | %.1f MiB |\n", l, s, r/1e6, r/o, k/1024}'
done < results.txt
