//! TOTP interoperability: secrets and key URIs made here work in other implementations, and
//! their codes pass our verifier. Checked against Python's pyotp and the `oathtool` command
//! (OATH Toolkit); see `support` for how missing tools are handled.

mod support;

use serde_json::{json, Value};
use warden_core::totp::{
    Algorithm, Digits, KeyUri, Period, TotpParams, TotpSecret, TotpVerdict, Window,
};

const ISSUER: &str = "ACME Hospital";
const ACCOUNT: &str = "tech.alice@example.org";

/// Times to test at: RFC 6238's, a step boundary, and now.
fn times() -> Vec<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    vec![
        59,
        1_111_111_109,
        1_234_567_890,
        1_700_000_040,
        2_000_000_000,
        now,
    ]
}

fn all_params() -> Vec<TotpParams> {
    let mut out = Vec::new();
    for algorithm in Algorithm::ALL {
        for digits in [Digits::Six, Digits::Eight] {
            for period in [30, 60] {
                out.push(TotpParams {
                    algorithm,
                    digits,
                    period_secs: Period::from_secs(period).unwrap(),
                    window: Window::default(),
                });
            }
        }
    }
    out
}

/// Checks that `code` (made elsewhere for `time`) is accepted at `time` for the step of
/// `time`, and at one period later for the previous step (inside the ±1 window).
fn assert_accepted(params: &TotpParams, secret: &TotpSecret, code: &str, time: u64, who: &str) {
    let step = params.time_step(time);
    assert_eq!(
        params.verify(secret, code, time, None),
        TotpVerdict::Accepted { step },
        "{who}: {} {}-digit {}s code at {time}",
        params.algorithm,
        params.digits.count(),
        params.period_secs.secs()
    );
    let later = time + u64::from(params.period_secs.secs());
    assert_eq!(
        params.verify(secret, code, later, None),
        TotpVerdict::Accepted { step },
        "{who}: code from the previous step at {later}"
    );
    assert_eq!(
        params.verify(secret, code, time, Some(step)),
        TotpVerdict::Replay { step },
        "{who}: replay at {time}"
    );
}

/// pyotp parses our URI, reports the same parameters, and its codes pass our verifier; its
/// codes from an explicitly constructed TOTP object pass too (parsing and generation apart).
#[test]
fn pyotp_parses_our_uris_and_its_codes_verify_here() {
    let Some(python) = support::python_with(
        "pyotp_parses_our_uris_and_its_codes_verify_here",
        &["pyotp"],
    ) else {
        return;
    };
    let cases: Vec<(TotpParams, TotpSecret, String)> = all_params()
        .into_iter()
        .map(|params| {
            let secret = TotpSecret::generate();
            let uri = KeyUri::new(Some(ISSUER), ACCOUNT, secret.clone(), params).unwrap();
            (params, secret, uri.to_uri().expose_secret().to_owned())
        })
        .collect();
    let input = json!({
        "times": times(),
        "cases": cases.iter().map(|(params, secret, uri)| json!({
            "uri": uri,
            "secret": secret.to_base32().expose_secret(),
            "digits": params.digits.count(),
            "period": params.period_secs.secs(),
            "algorithm": params.algorithm.name().to_lowercase(),
        })).collect::<Vec<_>>(),
    });
    let script = r#"
import hashlib, json, sys
import pyotp
request = json.load(sys.stdin)
results = []
for case in request["cases"]:
    parsed = pyotp.parse_uri(case["uri"])
    explicit = pyotp.TOTP(case["secret"], digits=case["digits"], interval=case["period"],
                          digest=getattr(hashlib, case["algorithm"]))
    results.append({
        "secret": parsed.secret,
        "digits": parsed.digits,
        "period": parsed.interval,
        "algorithm": parsed.digest().name,
        "name": parsed.name,
        "issuer": parsed.issuer,
        "parsed_codes": [parsed.at(t) for t in request["times"]],
        "explicit_codes": [explicit.at(t) for t in request["times"]],
    })
json.dump(results, sys.stdout)
"#;
    let output = support::run_python(&python, script, &input.to_string());
    let results: Vec<Value> = serde_json::from_str(&output).unwrap();
    assert_eq!(results.len(), cases.len());
    for ((params, secret, _), result) in cases.iter().zip(&results) {
        assert_eq!(result["secret"], secret.to_base32().expose_secret());
        assert_eq!(result["digits"], params.digits.count());
        assert_eq!(result["period"], params.period_secs.secs());
        assert_eq!(
            result["algorithm"],
            params.algorithm.name().to_lowercase().as_str()
        );
        assert_eq!(result["name"], ACCOUNT);
        assert_eq!(result["issuer"], ISSUER);
        for kind in ["parsed_codes", "explicit_codes"] {
            let codes = result[kind].as_array().unwrap();
            for (time, code) in times().into_iter().zip(codes) {
                assert_accepted(params, secret, code.as_str().unwrap(), time, "pyotp");
            }
        }
    }
}

/// pyotp's own URIs (random pyotp secrets) parse here, and its codes pass our verifier.
#[test]
fn pyotp_uris_parse_here() {
    let Some(python) = support::python_with("pyotp_uris_parse_here", &["pyotp"]) else {
        return;
    };
    let script = r#"
import hashlib, json, sys
import pyotp
request = json.load(sys.stdin)
results = []
for digest, digits, interval in [("sha1", 6, 30), ("sha256", 8, 60), ("sha512", 8, 30)]:
    totp = pyotp.TOTP(pyotp.random_base32(), digits=digits, interval=interval,
                      digest=getattr(hashlib, digest))
    results.append({
        "uri": totp.provisioning_uri(name="bob@example.org", issuer_name="ACME Hospital"),
        "secret": totp.secret,
        "codes": [totp.at(t) for t in request["times"]],
    })
json.dump(results, sys.stdout)
"#;
    let output = support::run_python(&python, script, &json!({"times": times()}).to_string());
    let results: Vec<Value> = serde_json::from_str(&output).unwrap();
    let expected = [
        (Algorithm::Sha1, Digits::Six, 30),
        (Algorithm::Sha256, Digits::Eight, 60),
        (Algorithm::Sha512, Digits::Eight, 30),
    ];
    for (result, (algorithm, digits, period)) in results.iter().zip(expected) {
        let uri = KeyUri::parse(result["uri"].as_str().unwrap()).unwrap();
        assert_eq!(uri.issuer(), Some("ACME Hospital"));
        assert_eq!(uri.account(), "bob@example.org");
        let params = uri.params();
        assert_eq!(params.algorithm, algorithm);
        assert_eq!(params.digits, digits);
        assert_eq!(params.period_secs.secs(), period);
        assert_eq!(
            uri.secret().to_base32().expose_secret(),
            result["secret"].as_str().unwrap()
        );
        let codes = result["codes"].as_array().unwrap();
        for (time, code) in times().into_iter().zip(codes) {
            assert_accepted(params, uri.secret(), code.as_str().unwrap(), time, "pyotp");
        }
    }
}

/// oathtool (a C implementation) generates codes from our base32 secret that pass here.
/// Verifies: S1
#[test]
fn oathtool_codes_verify_here() {
    let Some(oathtool) = support::command(
        "oathtool_codes_verify_here",
        "oathtool",
        &["--version"],
        "Install it with `apt-get install -y oathtool`.",
    ) else {
        return;
    };
    for params in all_params() {
        let secret = TotpSecret::generate();
        let base32 = secret.to_base32();
        let mode = format!("--totp={}", params.algorithm.name().to_lowercase());
        let digits = format!("--digits={}", params.digits.count());
        let step = format!("--time-step-size={}s", params.period_secs.secs());
        for time in times() {
            let now = format!("--now=@{time}");
            let output = support::run(
                &oathtool,
                &[
                    &mode,
                    "--base32",
                    &digits,
                    &step,
                    &now,
                    base32.expose_secret(),
                ],
                "",
            );
            assert_accepted(&params, &secret, output.trim(), time, "oathtool");
        }
    }
}
