#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time each, and reports per target: runs,
# CPU time, coverage and crashes. Usage:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a compiler with `-Z` flags
# (libFuzzer instrumentation, AddressSanitizer): a nightly toolchain if one is installed,
# otherwise the pinned stable one with RUSTC_BOOTSTRAP=1 (checked with 1.95.0). Without
# cargo-fuzz it fails with exit code 2 and says so; the same bodies run in the normal test
# suite (`cargo test --test fuzz_smoke` in warden-core, -shim, -siem, -ota), which is what CI
# runs. Each target starts from the committed seeds in fuzz/seeds/TARGET; what libFuzzer
# finds goes to target/fuzz/corpus/TARGET (kept between runs, never committed), crashes to
# fuzz/artifacts/TARGET. Exit code 1 when any target crashed. Record results in
# docs/FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cat >&2 <<'EOF'
error: cargo-fuzz is not installed, so no target can run under libFuzzer.
       Install it with `cargo install cargo-fuzz --locked`, then run this script again.
       The fuzz bodies still run in the normal test suite: cargo test --test fuzz_smoke
       (-p warden-core, -p warden-shim, -p warden-siem, -p warden-ota).
EOF
  exit 2
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
  echo "== toolchain: nightly"
else
  # cargo-fuzz passes -Zsanitizer and -Cpasses=sancov-module; stable accepts them only with
  # RUSTC_BOOTSTRAP=1. Fine for a test build; never for a release.
  export RUSTC_BOOTSTRAP=1
  echo "== toolchain: $(rustc --version) with RUSTC_BOOTSTRAP=1 (no nightly installed)"
fi

# cargo-fuzz builds into fuzz/target unless told otherwise; honour CARGO_TARGET_DIR.
target_dir=()
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

echo "== building ${#targets[@]} targets (release, AddressSanitizer, debug assertions)"
cargo "${toolchain[@]}" fuzz build -O --debug-assertions "${target_dir[@]}" >/dev/null

mkdir -p target/fuzz/logs
printf '%-16s %10s %10s %8s %8s  %s\n' target runs cpu_s cov features result
failed=0
for t in "${targets[@]}"; do
  work="target/fuzz/corpus/$t"
  mkdir -p "$work"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  log="target/fuzz/logs/$t.log"
  set +e
  TIMEFORMAT='%U %S'
  { time cargo "${toolchain[@]}" fuzz run -O --debug-assertions "${target_dir[@]}" "$t" "$work" "${seeds[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 -max_len=65536 \
      >"$log" 2>&1; } 2>"target/fuzz/logs/$t.time"
  status=$?
  set -e
  read -r user sys <"target/fuzz/logs/$t.time"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="CRASH (exit $status; see $log and fuzz/artifacts/$t)"
    failed=1
  fi
  printf '%-16s %10s %10s %8s %8s  %s\n' "$t" "${runs:-?}" "$cpu" "${cov:-?}" "${ft:-?}" "$result"
done
exit "$failed"
