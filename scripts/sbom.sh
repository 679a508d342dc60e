#!/usr/bin/env bash
# A CycloneDX SBOM (JSON, spec 1.5) of the `warden` binary: every crate compiled into it, with
# versions, licenses, hashes of the crates.io packages and the dependency graph, for Linux x86_64.
# Usage: scripts/sbom.sh [OUT_DIR]        (default target/sbom; writes OUT_DIR/warden.cdx.json)
#
# Needs cargo-cyclonedx (`cargo install cargo-cyclonedx --locked`). The timestamp is the last
# commit's, so the same commit gives the same file. Regenerate after any change to Cargo.lock;
# see docs/SUPPLY-CHAIN.md.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${1:-target/sbom}"
if ! cargo cyclonedx --version >/dev/null 2>&1; then
  echo "error: cargo-cyclonedx is not installed: cargo install cargo-cyclonedx --locked" >&2
  exit 2
fi

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
target="${SBOM_TARGET:-x86_64-unknown-linux-gnu}"
# cargo-cyclonedx writes next to the manifest; write there, then move the file.
produced=crates/warden/warden.cdx.json
# It also writes one for every other workspace member: those are removed.
cleanup() { rm -f crates/*/warden.cdx.json; }
trap cleanup EXIT
cleanup
cargo cyclonedx --manifest-path crates/warden/Cargo.toml --format json --spec-version 1.5 \
  --target "$target" --no-build-deps --override-filename warden.cdx -q
if [ ! -f "$produced" ]; then
  echo "error: cargo-cyclonedx wrote no $produced" >&2
  exit 1
fi
mkdir -p "$out_dir"
mv "$produced" "$out_dir/warden.cdx.json"
cleanup
components=$(grep -c '"bom-ref"' "$out_dir/warden.cdx.json" || true)
echo "wrote $out_dir/warden.cdx.json ($components components, target $target)"
