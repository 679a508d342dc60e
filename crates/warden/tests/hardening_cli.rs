//! Security regressions from issue 11 ("Hardening") that are seen from the command line:
//! configuration tokens from the future, KDF parameters no machine can run, and error messages
//! that repeat their own cause.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::{run, Fixture};
use warden_core::keyring::Purpose;
use warden_core::sealed_config::ConfigSealer;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// A box whose clock was set back used to be told "wrong key, or the token was modified".
#[test]
fn a_config_from_the_future_is_reported_as_a_clock_problem() {
    let fx = Fixture::new();
    let sealer = ConfigSealer::new(&fx.key(Purpose::Config));
    let token = sealer.seal_at(b"siem:\n  host: 127.0.0.1\n", now() + 3600);
    let file = fx.file("future.yaml.sealed", token.as_bytes());

    let refused = run(fx.admin().args(["config", "open"]).arg(&file));
    refused.expect_code(1).stderr_has(&[
        "authentic",
        "s ahead of this machine's clock",
        "at most 60 s",
        "--config-clock-skew",
    ]);
    assert!(!refused.stderr.contains("wrong key"), "{}", refused.stderr);

    // The tolerated skew is a setting (option or environment).
    let opened = run(fx
        .admin()
        .args(["--config-clock-skew", "7200", "config", "open"])
        .arg(&file));
    opened.ok();
    assert_eq!(opened.stdout, b"siem:\n  host: 127.0.0.1\n");
    run(fx
        .admin()
        .env("WARDEN_CONFIG_CLOCK_SKEW", "7200")
        .args(["config", "open"])
        .arg(&file))
    .ok();

    // Under another key it is still a wrong key, whatever its time.
    let other = ConfigSealer::new(&warden_core::secret::Key32::from_bytes([7; 32]));
    let foreign = fx.file(
        "foreign.yaml.sealed",
        other.seal_at(b"x: 1\n", now() + 3600).as_bytes(),
    );
    run(fx.admin().args(["config", "open"]).arg(&foreign))
        .expect_code(3)
        .stderr_has(&["wrong key"]);
}
