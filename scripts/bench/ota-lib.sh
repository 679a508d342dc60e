# Shared by the OTA benchmark scripts (sourced, not run): a data directory for `ota serve` and
# the cards of a campaign. Needs W (the warden binary) and PORT; works in the current directory.

# A data directory, the server's configuration and one PSK for every card. Sets WARDEN and
# ADMIN (command arrays) and KEY. Every command signs in: a cheap Argon2id and no spacing
# between sign-ins, so the figures measure the work, not the password hash or the attempt
# throttle; the administrator holds every permission the benchmarks need.
bench_data_dir() {
  printf 'benchmark-passphrase-0123456789\n' > pass && chmod 600 pass
  printf 'benchmark-auditor-passphrase-42\n' > auditor && chmod 600 auditor
  printf 'Bench-Admin-Password-1!\n' > admin-pass && chmod 600 admin-pass
  printf '{"password":{"argon2":{"memory_kib":8192,"iterations":1,"parallelism":1}},"backoff":{"min_interval_ms":0,"base_delay_ms":0,"max_delay_ms":0}}' > policy.json
  WARDEN=("$W" --data-dir data --passphrase-file pass)
  "${WARDEN[@]}" --auditor-passphrase-file auditor init --kdf-iterations 1000 \
    --admin bench --admin-password-file admin-pass --identity-policy policy.json >/dev/null 2>&1
  ADMIN=("${WARDEN[@]}" --as bench --password-file admin-pass)
  KEY=$(openssl rand -hex 16)
  printf '%s\n' "$KEY" > key && chmod 600 key
  printf 'listen: 127.0.0.1:%s\nmax_connections: 20000\nmax_handshakes: 4096\n' "$PORT" > ota.yaml
}

# bench_cards PREFIX COUNT SCRIPTS REDELIVERY: cards PREFIX0…PREFIX<COUNT-1> with the key, each
# with SCRIPTS one-APDU scripts (GET DATA) queued.
bench_cards() {
  local prefix=$1 count=$2 scripts=$3 redelivery=$4 i cards=()
  {
    echo "keys:"
    for i in $(seq 0 $((count - 1))); do printf '  - identity: %s%d\n    key: "%s"\n' "$prefix" "$i" "$KEY"; done
  } > keys.yaml && chmod 600 keys.yaml
  "${ADMIN[@]}" ota keys import keys.yaml >/dev/null 2>&1
  for i in $(seq 0 $((count - 1))); do cards+=(--card "$prefix$i"); done
  if [ "$scripts" -gt 0 ]; then
    "${ADMIN[@]}" ota push "${cards[@]}" --apdu 80CA9F7F00 --redelivery "$redelivery" \
      --count "$scripts" >/dev/null 2>&1
  fi
}
