#!/usr/bin/env bash
# OTA server benchmark: the release `warden ota serve` and the load generator `warden ota bench`
# as two processes on this machine, over 127.0.0.1 only. Bounded: fixed counts, every client
# step under a timeout, the server stopped at the end. Prints JSON per step; docs/BENCHMARKS.md
# ("OTA") records the figures with these commands.
#
#   scripts/bench/ota.sh [DIR]        (DIR: where the data directory goes; default /tmp)
#
# Knobs (environment): CARDS (full sessions, one card each; default 2000), SCRIPTS and
# APDUS_PER_SCRIPT (one long session), IDLE (concurrent idle sessions; default 10000),
# HANDSHAKES (per server and TLS version; default 1000). Ends with scripts/bench/ota-campaign.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/ota-lib.sh
ROOT="$PWD"
BASE="${1:-/tmp}"
DIR="$BASE/warden-bench-ota.$$"
CARDS="${CARDS:-2000}"
SCRIPTS="${SCRIPTS:-200}"
APDUS_PER_SCRIPT="${APDUS_PER_SCRIPT:-50}"
IDLE="${IDLE:-10000}"
HANDSHAKES="${HANDSHAKES:-1000}"
PORT="${PORT:-18443}"
SPORT="${SPORT:-18453}"
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p warden
W="$PWD/target/release/warden"
mkdir -p "$DIR"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "${SSERVER_PID:-}" ] && kill "$SSERVER_PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"
bench_data_dir

# Keys: bench0..bench<CARDS-1> and apdu0, one import.
{
  echo "keys:"
  for i in $(seq 0 $((CARDS - 1))); do printf '  - identity: bench%d\n    key: "%s"\n' "$i" "$KEY"; done
  printf '  - identity: apdu0\n    key: "%s"\n' "$KEY"
} > keys.yaml && chmod 600 keys.yaml
"${ADMIN[@]}" ota keys import keys.yaml 2>/dev/null

# One script (one GET DATA) per card for the full sessions.
CARD_ARGS=()
for i in $(seq 0 $((CARDS - 1))); do CARD_ARGS+=(--card "bench$i"); done
"${ADMIN[@]}" ota push "${CARD_ARGS[@]}" --apdu 80CA9F7F00 2>/dev/null
# SCRIPTS scripts of APDUS_PER_SCRIPT commands for the long session.
APDU_ARGS=()
for _ in $(seq "$APDUS_PER_SCRIPT"); do APDU_ARGS+=(--apdu 80CA004200); done
"${ADMIN[@]}" ota push --card apdu0 "${APDU_ARGS[@]}" --count "$SCRIPTS" 2>/dev/null

cat > ota.yaml <<EOF
listen: 127.0.0.1:$PORT
max_connections: 20000
max_handshakes: 4096
sessions:
  idle_timeout_secs: 600
  session_timeout_secs: 3600
EOF
"${WARDEN[@]}" ota serve --allow-plain-config --config ota.yaml 2>server.log &
SERVER_PID=$!
for _ in $(seq 100); do grep -q listening server.log 2>/dev/null && break; sleep 0.1; done

echo "== machine"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB; kernel $(uname -r); $(openssl version)"
echo "data directory on: $(df -T "$DIR" | awk 'NR==2{print $2}')"

CARD=(--server "127.0.0.1:$PORT" --key-file key)
echo "== full sessions with one script each ($CARDS cards, 64 at a time)"
timeout 600 "$W" ota bench sessions "${CARD[@]}" --identity bench --cards "$CARDS" --sessions "$CARDS" --concurrency 64
echo "== full sessions with an empty queue (opening POST, 204)"
timeout 600 "$W" ota bench sessions "${CARD[@]}" --identity bench --cards "$CARDS" --sessions "$CARDS" --concurrency 64
echo "== one session: $SCRIPTS scripts x $APDUS_PER_SCRIPT APDUs"
timeout 600 "$W" ota bench apdus "${CARD[@]}" --identity apdu0
"${ADMIN[@]}" ota push --card apdu0 --apdu 80CA004200 --count 2000 2>/dev/null
echo "== one session: 2000 scripts x 1 APDU (one HTTP round trip per APDU)"
timeout 600 "$W" ota bench apdus "${CARD[@]}" --identity apdu0
for v in 1.2 1.3; do
  echo "== handshakes TLS $v, warden, one at a time"
  timeout 600 "$W" ota bench handshakes "${CARD[@]}" --identity bench0 --tls-version "$v" --count "$HANDSHAKES" --concurrency 1
  echo "== handshakes TLS $v, warden, 32 at a time"
  timeout 600 "$W" ota bench handshakes "${CARD[@]}" --identity bench0 --tls-version "$v" --count "$HANDSHAKES" --concurrency 32
done
echo "== concurrent idle sessions: $IDLE held for 10 s"
timeout 900 "$W" ota bench idle "${CARD[@]}" --identity bench --cards "$CARDS" --count "$IDLE" --concurrency 200 --hold 10 --server-pid "$SERVER_PID"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""

# openssl s_server, same machine, same client: sequential handshakes (s_server serves one
# connection at a time, so only concurrency 1 is a fair comparison).
for v in 1.2 1.3; do
  flag="-tls1_2"; [ "$v" = 1.3 ] && flag="-tls1_3"
  openssl s_server -nocert -psk "$KEY" -psk_identity bench0 -accept "127.0.0.1:$SPORT" \
    -cipher PSK-AES128-CBC-SHA256 -ciphersuites TLS_AES_128_GCM_SHA256 "$flag" -quiet -no_ticket \
    >/dev/null 2>&1 </dev/null &
  SSERVER_PID=$!
  sleep 0.5
  echo "== handshakes TLS $v, openssl s_server, one at a time"
  timeout 600 "$W" ota bench handshakes --server "127.0.0.1:$SPORT" --key-file key --identity bench0 --tls-version "$v" --count "$HANDSHAKES" --concurrency 1
  kill "$SSERVER_PID" 2>/dev/null || true; wait "$SSERVER_PID" 2>/dev/null || true; SSERVER_PID=""
done

# The campaign (server CPU per session from /proc, 10 then 200 cards at a time) and the APDU
# round trips per kind of script: scripts/bench/ota-campaign.sh, with the same card count.
echo "== campaign"
CARDS="$CARDS" "$ROOT/scripts/bench/ota-campaign.sh" "$BASE"
