//! Body of the `siem_config` fuzz target in `fuzz/` (cargo-fuzz), kept here so that
//! `cargo test` runs it too (`tests/fuzz_smoke.rs`). It panics only when an invariant breaks.

use crate::config::SiemConfig;

/// A YAML document's `siem:` section: never a panic; what validates has a usable endpoint.
pub fn siem_config(data: &[u8]) {
    let Ok(config) = SiemConfig::from_yaml_document(data) else {
        return;
    };
    if let Ok(settings) = config.validate() {
        assert_ne!(settings.endpoint.port, 0);
        assert!(!settings.endpoint.server_name.is_empty());
    }
}

/// Well-formed inputs for the target.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        b"siem:\n  host: siem.example.org\n  ca_file: /etc/warden/ca.pem\n  client_cert: /etc/warden/c.pem\n  client_key: /etc/warden/c.key\nother_section:\n  anything: goes\n".to_vec(),
        b"siem:\n  host: 10.0.0.5\n  port: 6514\n  server_name: siem.hospital.example\n  ca_file: ca.pem\n  client_cert: c.pem\n  client_key: c.key\n  facility: local4\n  hostname: shim-01\n  app_name: warden\n  timeouts: { connect_ms: 5000 }\n  delivery: { batch: 64, max_message_bytes: 8192 }\n  backoff: { initial_ms: 500, max_ms: 60000 }\n  spool: { soft_limit: 10000, hard_limit: 100000 }\n".to_vec(),
        b"shim_id: x\n".to_vec(),
    ]
}
