#!/usr/bin/env bash
# Key-slot benchmarks (issue 12), all in one run, with the defaults a real data directory gets:
# the master slot with PBKDF2-HMAC-SHA256 × 600,000, people's slots with Argon2id (64 MiB, t=3,
# p=4), the recovery and service slots with HKDF. Prints Markdown for docs/BENCHMARKS.md.
#
#   scripts/bench/keyslots.sh     (WARDEN_BENCH_DIR=DIR for the data directory, default /tmp;
#                                  GIB=N GiB of recordings to rotate, default 1; RUNS=N, default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${RUNS:-5}"
GIB="${GIB:-1}"
cargo build -q --release -p warden
cargo bench -q -p warden-core --bench keyslots 2>/dev/null > "${TMPDIR:-/tmp}/keyslots-criterion.txt" || true
W="${CARGO_TARGET_DIR:-target}/release/warden"
BASE="$(mktemp -d "${WARDEN_BENCH_DIR:-/tmp}/keyslots-bench.XXXXXX")"
trap 'rm -rf "$BASE"' EXIT
D="$BASE/data"
secret() { umask 077; printf '%s\n' "$2" > "$BASE/$1"; }
secret pass 'benchmark master passphrase, long enough'
secret pass2 'the other master passphrase, also long'
secret admin 'Bench-Admin-Password-1'
secret auditor 'benchmark auditor passphrase, long enough'
now() { date +%s.%N; }
# time_runs LABEL CMD...: the median and best of RUNS runs, in seconds.
time_runs() {
  local label="$1"; shift
  local times=()
  for _ in $(seq "$RUNS"); do
    sleep 1.1  # the identity policy spaces sign-ins at least 1 s apart (not timed)
    local t0; t0=$(now); "$@" >/dev/null 2>&1; local t1; t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '{v[NR]=$1} END {
    printf "| %s | %.3f | %.3f |\n", label, v[int((NR+1)/2)], v[1] }'
}

"$W" --data-dir "$D" --passphrase-file "$BASE/pass" --auditor-passphrase-file "$BASE/auditor" \
  init --admin admin --admin-password-file "$BASE/admin" --recovery-key-out "$BASE/recovery" >/dev/null 2>&1
AS=(--data-dir "$D" --as admin --password-file "$BASE/admin")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "data directory: $D ($(df -T "$BASE" | awk 'NR==2 {print $2}'))"
echo
echo "| command (end to end, release build) | median s | best s |"
echo "|---|---:|---:|"
time_runs '`warden --as admin user policy` (Argon2id slot, store open, sign-in, one event)' \
  "$W" "${AS[@]}" user policy
time_runs '`warden keys check` (master slot, PBKDF2 × 600,000)' \
  "$W" --data-dir "$D" --passphrase-file "$BASE/pass" keys check
time_runs '`warden keys check --recovery-key-file` (HKDF)' \
  "$W" --data-dir "$D" --recovery-key-file "$BASE/recovery" keys check
# keys passphrase: sign-in + the current master slot + a new one; back and forth.
pp() { "$W" "${AS[@]}" --passphrase-file "$BASE/$1" keys passphrase --new-passphrase-file "$BASE/$2"; }
times=()
for i in $(seq "$RUNS"); do
  sleep 1.1; t0=$(now); pp pass pass2 >/dev/null 2>&1; t1=$(now); sleep 1.1; pp pass2 pass >/dev/null 2>&1
  times+=("$(echo "$t1 - $t0" | bc -l)")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{v[NR]=$1} END {
  printf "| `warden keys passphrase` (sign-in, old master slot, new master slot, commit) | %.3f | %.3f |\n", v[int((NR+1)/2)], v[1] }'

# GIB GiB of sealed recordings, 64 MiB each, in DATA_DIR/sessions.
files=$((GIB * 16))
for i in $(seq "$files"); do
  head -c $((64 << 20)) /dev/urandom > "$BASE/plain"
  sleep 1.1
  "$W" "${AS[@]}" vault seal "$BASE/plain" "$D/sessions/bench-$i.sealed" >/dev/null 2>&1
done
rm -f "$BASE/plain"
bytes=$(du -cb "$D"/sessions/*.sealed | tail -1 | cut -f1)
sync
rot() {
  local label="$1"; shift
  sleep 1.1
  local t0; t0=$(now); "$W" "${AS[@]}" keys rotate recordings "$@" >/dev/null 2>&1; local t1; t1=$(now)
  echo "$t1 - $t0" | bc -l | awk -v label="$label" -v b="$bytes" -v n="$files" \
    '{ printf "| %s, %d files, %.2f GiB | %.2f s | %.0f MB/s |\n", label, n, b/2^30, $1, b/1e6/$1 }'
}
echo
echo "| rotation of \`recordings\` | time | throughput |"
echo "|---|---:|---:|"
rot 're-wrap (version-2 headers rewritten in place, journalled)'
rot 're-encrypt (`--reencrypt`: every file read, sealed anew, replaced)' --reencrypt
echo
echo "criterion (warden-core --bench keyslots):"
awk '/^[A-Za-z0-9_\/]+( |$)/ {name=$1} /time:/ {print "  " name, $(NF-3), $(NF-2)}' \
  "${TMPDIR:-/tmp}/keyslots-criterion.txt"
