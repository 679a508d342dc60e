#!/usr/bin/env bash
# OTA campaign: the release `warden ota serve` and `warden ota bench campaign` as two processes
# over 127.0.0.1. Every card has three one-APDU scripts queued and runs one full admin session
# (handshake, three round trips, 204); the server's own CPU per session comes from
# /proc/PID/stat around the campaign (and by thread, user and system, from /proc/PID/task), its
# disk writes per session from /proc/PID/io. Prints one JSON object per step.
#
#   scripts/bench/ota-campaign.sh [DIR]     (DIR: where the data directory goes; default /tmp)
#
# Knobs: CARDS (default 2000), CONCURRENCY (space-separated list; default "10 200"),
# TLS (1.2 or 1.3; default 1.2), SCRIPTS_PER_CARD (default 3), REDELIVERY (allowed|forbidden),
# ROUND_TRIPS (default 1000; 0 skips that step), FLOOR (s_server handshakes, default 2000; 0 skips),
# PERF=FILE: run the server under `perf record` (cpu-clock samples, DWARF call graphs) and write
# the flat profile of the last campaign to FILE; BIN=PATH: use this warden binary instead of
# building one (to compare two builds in the same run).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/ota-lib.sh
BASE="${1:-/tmp}"
DIR="$BASE/warden-bench-campaign.$$"
CARDS="${CARDS:-2000}"
CONCURRENCY="${CONCURRENCY:-10 200}"
TLS="${TLS:-1.2}"
SCRIPTS_PER_CARD="${SCRIPTS_PER_CARD:-3}"
REDELIVERY="${REDELIVERY:-allowed}"
PORT="${PORT:-18463}"
ulimit -n "$(ulimit -Hn)"
if [ -n "${BIN:-}" ]; then
  W="$(realpath "$BIN")"
else
  cargo build --release -q -p warden
  W="$PWD/target/release/warden"
fi
mkdir -p "$DIR"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"
bench_data_dir

# The server's CPU so far by thread name: NAME USER_TICKS SYSTEM_TICKS, one line each, sorted.
threads() {
  for t in "/proc/$SERVER_PID/task/"*; do
    printf '%s %s\n' "$(tr ' ' _ < "$t/comm")" "$(cut -d')' -f2- "$t/stat" | awk '{print $12, $13}')"
  done | awk '{u[$1] += $2; s[$1] += $3} END {for (k in u) print k, u[k], s[k]}' | sort
}

echo "== machine"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "kernel $(uname -r); $(openssl version); data directory on $(df -T . | awk 'NR==2{print $2}')"

for C in $CONCURRENCY; do
  PREFIX="c${C}x"
  bench_cards "$PREFIX" "$CARDS" "$SCRIPTS_PER_CARD" "$REDELIVERY"
  if [ -n "${PERF:-}" ]; then
    perf record -q -o perf.data -F 1999 -e cpu-clock --call-graph dwarf,32768 -- \
      "${WARDEN[@]}" ota serve --allow-plain-config --config ota.yaml 2>server.log &
    PERF_PID=$!
    for _ in $(seq 100); do SERVER_PID=$(pgrep -P "$PERF_PID" || true); [ -n "$SERVER_PID" ] && break; sleep 0.05; done
  else
    WARDEN_LOG=warden_ota::store=info "${WARDEN[@]}" ota serve --allow-plain-config --config ota.yaml 2>server.log &
    SERVER_PID=$!
  fi
  for _ in $(seq 100); do grep -q listening server.log 2>/dev/null && break; sleep 0.1; done
  echo "== campaign: $CARDS cards, $C at a time, TLS $TLS, $SCRIPTS_PER_CARD scripts ($REDELIVERY) each"
  threads > threads.before
  timeout 900 "$W" ota bench campaign --server "127.0.0.1:$PORT" --key-file key \
    --identity "$PREFIX" --cards "$CARDS" --concurrency "$C" --tls-version "$TLS" \
    --server-pid "$SERVER_PID"
  threads > threads.after
  # The server's CPU by thread (tokio workers, the database thread), user and system, per session.
  join threads.before threads.after | awk -v n="$CARDS" -v hz="$(getconf CLK_TCK)" \
    '{ printf "%s\"%s\": {\"user_ms\": %.3f, \"system_ms\": %.3f}", sep, $1, ($4 - $2) * 1000 / hz / n, ($5 - $3) * 1000 / hz / n; sep = ", " }
     END { print "" }' | sed 's/^/{"server_cpu_per_session_by_thread": {/; s/$/}}/'
  # What the server wrote to disk since it started (WAL frames, checkpoints), per session; the
  # last batch commits within 10 ms of the campaign's end.
  sleep 0.1
  awk -v n="$CARDS" '/^write_bytes/ {printf "{\"server_disk_write_bytes_per_session\": %d}\n", $2 / n}' \
    "/proc/$SERVER_PID/io"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  grep -o 'database thread stopped.*' server.log || true
  if [ -n "${PERF:-}" ]; then
    wait "$PERF_PID" 2>/dev/null || true
    cp perf.data "$PERF.data"
    perf report -i perf.data --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
      | grep -v '^$' | head -400 > "$PERF"
    perf report -i perf.data --children --sort symbol --stdio -g none --percent-limit 2 2>/dev/null \
      | grep -v '^$' | head -300 > "$PERF.children"
  fi
done

# APDU round trips inside one session, idle server: 1000 one-APDU scripts that may run twice
# (the answer leaves before the commit), then 1000 that must not (commit, then answer).
ROUND_TRIPS="${ROUND_TRIPS:-1000}"
if [ "$ROUND_TRIPS" -gt 0 ]; then
  printf 'keys:\n  - identity: rt0\n    key: "%s"\n  - identity: rt1\n    key: "%s"\n' "$KEY" "$KEY" > keys.yaml
  "${ADMIN[@]}" ota keys import keys.yaml 2>/dev/null
  "${ADMIN[@]}" ota push --card rt0 --apdu 80CA9F7F00 --redelivery allowed --count "$ROUND_TRIPS" 2>/dev/null >/dev/null
  "${ADMIN[@]}" ota push --card rt1 --apdu 80CA9F7F00 --redelivery forbidden --count "$ROUND_TRIPS" 2>/dev/null >/dev/null
  "${WARDEN[@]}" ota serve --allow-plain-config --config ota.yaml 2>server.log &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q listening server.log 2>/dev/null && break; sleep 0.1; done
  for card in rt0:allowed rt1:forbidden; do
    echo "== one session: $ROUND_TRIPS one-APDU scripts, redelivery ${card#*:}"
    timeout 600 "$W" ota bench apdus --server "127.0.0.1:$PORT" --key-file key --identity "${card%%:*}" \
      --tls-version "$TLS"
  done
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
fi

# The floor on this machine, in the same run: `openssl s_server` (one connection at a time, no
# HTTP, no storage) paying for nothing but accept, the PSK handshake and the close. Its CPU per
# handshake, from /proc like the server's, is what any PSK-TLS server pays before a session
# does anything.
FLOOR="${FLOOR:-2000}"
if [ "$FLOOR" -gt 0 ]; then
  SPORT=$((PORT + 1))
  openssl s_server -nocert -psk "$KEY" -psk_identity floor -accept "127.0.0.1:$SPORT" \
    -naccept 1000000 -quiet "-tls${TLS/./_}" >/dev/null 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$SPORT") 2>/dev/null && break; sleep 0.1; done
  cpu() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
  before=$(cpu)
  timeout 600 "$W" ota bench handshakes --server "127.0.0.1:$SPORT" --key-file key --identity floor \
    --count "$FLOOR" --tls-version "$TLS" >/dev/null
  after=$(cpu)
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  echo "== floor: openssl s_server, $FLOOR PSK handshakes one at a time, TLS $TLS"
  awk -v t=$((after - before)) -v n="$FLOOR" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "{\"s_server_cpu_ms_per_handshake\": %.3f}\n", t * 1000 / hz / n }'
fi
