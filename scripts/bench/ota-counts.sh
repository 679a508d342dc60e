#!/usr/bin/env bash
# OTA campaign costs that do not drift with the machine: the server's user-space instructions
# per session (valgrind callgrind, counted only during the campaign) and its system calls per
# session (strace -c), each around its own campaign of CARDS cards (three one-APDU scripts each,
# CONCURRENCY at a time). CPU time on a shared two-core VM drifts by up to 1.6x within an hour;
# these counts repeat within about 1 %, so a change of a few per cent can be seen. They are not
# CPU time: under valgrind OpenSSL runs without SHA extensions (crypto is over-counted) and the
# slow server commits after fewer sessions (commit work is over-counted); kernel work is only in
# the syscall counts. Compare builds with BIN_A/BIN_B, not across machines.
#
#   scripts/bench/ota-counts.sh [BIN ...]     (default: the release build of this tree)
#
# Knobs: CARDS (default 200), CONCURRENCY (default 10), PORT (default 18563).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/ota-lib.sh
ROOT="$PWD"
CARDS="${CARDS:-200}"
CONCURRENCY="${CONCURRENCY:-10}"
PORT="${PORT:-18563}"
command -v valgrind >/dev/null && command -v strace >/dev/null \
  || { echo "needs valgrind and strace (apt-get install valgrind strace)" >&2; exit 2; }
if [ "$#" -eq 0 ]; then
  cargo build --release -q -p warden
  set -- "$PWD/target/release/warden"
fi
SERVER_PID=""
DIR=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "$DIR" ] && rm -rf "$DIR"
}
trap cleanup EXIT

# A fresh data directory with CARDS cards, each with three scripts queued.
setup() {
  DIR=$(mktemp -d /tmp/warden-bench-counts.XXXXXX)
  cd "$DIR"
  bench_data_dir
  bench_cards c "$CARDS" 3 allowed
}

listening() {
  for _ in $(seq 600); do grep -q "listening on" server.log 2>/dev/null && return 0; sleep 0.1; done
  echo "the server did not start: $(cat server.log)" >&2
  exit 1
}

campaign() {
  timeout 900 "$W" ota bench campaign --server "127.0.0.1:$PORT" --key-file key --identity c \
    --cards "$CARDS" --concurrency "$CONCURRENCY" --tls-version 1.2 > bench.json
  python3 -c "import json,sys; s=json.load(open('bench.json'))['sessions']; sys.exit(0 if s['sessions_ok']==$CARDS else 1)" \
    || { echo "not every session succeeded: $(cat bench.json)" >&2; exit 1; }
}

stop() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
  cd "$ROOT"; rm -rf "$DIR"; DIR=""
}

for W in "$@"; do
  W="$(realpath "$W")"
  # Instructions: valgrind runs the server uninstrumented until the campaign starts.
  setup
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/callgrind.out" \
    "${WARDEN[@]}" ota serve --allow-plain-config --config ota.yaml 2>server.log &
  SERVER_PID=$!
  listening
  callgrind_control -i on "$SERVER_PID" >/dev/null 2>&1
  campaign
  callgrind_control -i off "$SERVER_PID" >/dev/null 2>&1
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  IR=$(callgrind_annotate callgrind.out 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
  stop
  # System calls: strace attached to the running server around the campaign.
  setup
  "${WARDEN[@]}" ota serve --allow-plain-config --config ota.yaml 2>server.log &
  SERVER_PID=$!
  listening
  strace -c -f -q -o strace.txt -p "$SERVER_PID" &
  STRACE=$!
  sleep 1
  campaign
  kill -INT "$STRACE"; wait "$STRACE" 2>/dev/null || true
  SYSCALLS=$(awk -v n="$CARDS" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ {
      printf "%s\"%s\": %.2f", sep, $NF, $4 / n; sep = ", " }' strace.txt)
  TOTAL=$(awk '$NF == "total" {print $4}' strace.txt)
  stop
  printf '{"binary": "%s", "cards": %s, "concurrency": %s, "user_instructions_per_session": %s, "syscalls_per_session": %s, "by_syscall": {%s}}\n' \
    "$W" "$CARDS" "$CONCURRENCY" "$((IR / CARDS))" \
    "$(awk -v t="$TOTAL" -v n="$CARDS" 'BEGIN {printf "%.2f", t / n}')" "$SYSCALLS"
done
