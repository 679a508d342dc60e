#!/usr/bin/env bash
# Supply-chain checks with cargo-deny against deny.toml: licenses, bans (duplicate versions are
# warnings), sources, and RustSec advisories. Usage: scripts/deny.sh
#
# Advisories need the RustSec database, which cargo-deny fetches from GitHub. Where GitHub cannot
# be reached, the check runs offline against a database fetched earlier ($CARGO_HOME/advisory-dbs),
# and when there is none it is skipped with a warning (exit 0) — unless WARDEN_REQUIRE_ADVISORIES=1,
# which makes a missing database an error. See docs/SUPPLY-CHAIN.md.
# Implements: V82
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
  echo "error: cargo-deny is not installed: cargo install cargo-deny --locked" >&2
  exit 2
fi

echo "== cargo deny: licenses, bans, sources"
cargo deny --locked check licenses bans sources

db_dir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  echo "== cargo deny: advisories (RustSec database fetched)"
  cargo deny --locked check advisories
elif compgen -G "$db_dir/*" >/dev/null; then
  echo "== cargo deny: advisories, offline (GitHub unreachable; database in $db_dir as last fetched)"
  cargo deny --locked --offline check advisories
elif [ "${WARDEN_REQUIRE_ADVISORIES:-0}" = 1 ]; then
  echo "error: the RustSec advisory database cannot be fetched (GitHub unreachable) and none is cached in $db_dir" >&2
  exit 1
else
  echo "warning: advisories NOT checked: GitHub (the RustSec database) is unreachable and no database is cached in $db_dir" >&2
fi
