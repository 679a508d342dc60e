//! `otpauth://totp/` key URIs (Google Authenticator's key-uri format), the way a TOTP
//! credential reaches an authenticator app, usually as a QR code.
//!
//! Built as `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…&algorithm=…&digits=…&period=…`.
//! Issuer and account are percent-encoded except for RFC 3986's unreserved characters (so a
//! space is `%20`, never `+`), and neither may contain a colon. Parsing accepts what other
//! generators write: a literal or encoded colon in the label, spaces before the account, `+`
//! for a space in the query, parameters in any order, unknown parameters (such as `image`)
//! ignored. A URI holds the secret, so it is a secret type and no error ever quotes it.

use super::{Algorithm, Digits, Period, TotpParams, TotpParamsError, TotpSecret, TotpSecretError};
use crate::secret::SecretString;

const SCHEME: &str = "otpauth://";
const TOTP_TYPE: &str = "totp";
/// Longer than any real enrollment URI; bounds the work done on hostile input.
const MAX_URI_BYTES: usize = 4096;
/// The query parameters the format defines for TOTP; any others are ignored.
const KNOWN_PARAMETERS: [&str; 5] = ["secret", "issuer", "algorithm", "digits", "period"];
/// Issuer and account names longer than this are not names.
const MAX_NAME_CHARS: usize = 256;

/// Why a key URI could not be built or parsed. Never contains the secret or the whole URI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyUriError {
    // The URI as a whole.
    #[error("key URI is longer than {MAX_URI_BYTES} bytes")]
    TooLong,
    #[error("not an otpauth:// URI")]
    NotOtpauth,
    #[error("only otpauth://totp/ URIs are supported, not {0:?}")]
    UnsupportedType(String),
    #[error("key URI has a fragment (#…), which the format does not allow")]
    HasFragment,
    #[error("bad percent-encoding in the key URI {part}")]
    BadPercentEncoding { part: &'static str },
    #[error("the key URI {part} is not UTF-8 after percent-decoding")]
    NotUtf8 { part: &'static str },
    // The label and the names in it.
    #[error("the key URI names no account")]
    MissingAccount,
    #[error("the {part} name is empty")]
    EmptyName { part: &'static str },
    #[error("the {part} name contains a colon, which the key URI format reserves as separator")]
    ColonInName { part: &'static str },
    #[error("the {part} name starts or ends with white space")]
    SurroundingWhitespace { part: &'static str },
    #[error("the {part} name contains a control character")]
    ControlCharacterInName { part: &'static str },
    #[error("the {part} name is longer than {MAX_NAME_CHARS} characters")]
    NameTooLong { part: &'static str },
    #[error(
        "the issuer in the label ({label:?}) differs from the issuer parameter ({parameter:?})"
    )]
    IssuerMismatch { label: String, parameter: String },
    // The query parameters.
    #[error("the key URI has no secret parameter")]
    MissingSecret,
    #[error("the key URI repeats the {0:?} parameter")]
    DuplicateParameter(&'static str),
    #[error("the key URI's secret is unusable")]
    BadSecret(#[from] TotpSecretError),
    #[error("the key URI's {parameter} parameter is not a plain decimal number")]
    NotANumber { parameter: &'static str },
    #[error("the key URI's {parameter} parameter is unusable")]
    BadParameter {
        parameter: &'static str,
        source: TotpParamsError,
    },
}

/// A TOTP credential as an authenticator app sees it: who issued it, for which account, the
/// secret, and the code parameters. The verification window is not part of the format; a
/// parsed URI carries the default window.
#[derive(Clone)]
pub struct KeyUri {
    issuer: Option<String>,
    account: String,
    secret: TotpSecret,
    params: TotpParams,
}

impl KeyUri {
    /// Checks the names: non-empty, no colon, no control characters, no white space at either
    /// end, at most 256 characters.
    pub fn new(
        issuer: Option<&str>,
        account: &str,
        secret: TotpSecret,
        params: TotpParams,
    ) -> Result<Self, KeyUriError> {
        if let Some(issuer) = issuer {
            check_name(issuer, "issuer")?;
        }
        check_name(account, "account")?;
        Ok(Self {
            issuer: issuer.map(str::to_owned),
            account: account.to_owned(),
            secret,
            params,
        })
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn secret(&self) -> &TotpSecret {
        &self.secret
    }

    pub fn params(&self) -> &TotpParams {
        &self.params
    }

    /// The URI text. Algorithm, digits and period are always written out, defaults included.
    pub fn to_uri(&self) -> SecretString {
        let mut uri = String::with_capacity(160);
        uri.push_str(SCHEME);
        uri.push_str(TOTP_TYPE);
        uri.push('/');
        if let Some(issuer) = &self.issuer {
            percent_encode_into(issuer, &mut uri);
            uri.push(':');
        }
        percent_encode_into(&self.account, &mut uri);
        uri.push_str("?secret=");
        uri.push_str(self.secret.to_base32().expose_secret());
        if let Some(issuer) = &self.issuer {
            uri.push_str("&issuer=");
            percent_encode_into(issuer, &mut uri);
        }
        uri.push_str("&algorithm=");
        uri.push_str(self.params.algorithm.name());
        uri.push_str("&digits=");
        uri.push_str(&self.params.digits.count().to_string());
        uri.push_str("&period=");
        uri.push_str(&self.params.period_secs.secs().to_string());
        SecretString::new(uri)
    }

    /// Parses an `otpauth://totp/` URI.
    pub fn parse(uri: &str) -> Result<Self, KeyUriError> {
        if uri.len() > MAX_URI_BYTES {
            return Err(KeyUriError::TooLong);
        }
        let rest = strip_prefix_ignore_case(uri, SCHEME).ok_or(KeyUriError::NotOtpauth)?;
        let kind_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (kind, rest) = rest.split_at(kind_end);
        if !kind.eq_ignore_ascii_case(TOTP_TYPE) {
            // Echo the type only when it looks like one: this part may hold anything.
            let shown = if kind.len() <= 16 && kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
                kind.to_owned()
            } else {
                "?".to_owned()
            };
            return Err(KeyUriError::UnsupportedType(shown));
        }
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.contains('#') {
            return Err(KeyUriError::HasFragment);
        }
        let (label, query) = rest.split_once('?').unwrap_or((rest, ""));

        let label = percent_decode(label, false, "label")?;
        let (label_issuer, account) = match label.split_once(':') {
            Some((issuer, account)) => (Some(issuer), account.trim_start_matches(' ')),
            None => (None, label.as_str()),
        };
        if account.is_empty() {
            return Err(KeyUriError::MissingAccount);
        }

        let mut secret = None;
        let mut parameter_issuer = None;
        let mut params = TotpParams::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name, true, "query")?;
            // Unknown parameters (such as `image`) are ignored, repeated or not.
            let Some(known) = KNOWN_PARAMETERS.iter().find(|known| **known == name) else {
                continue;
            };
            if seen.contains(known) {
                return Err(KeyUriError::DuplicateParameter(known));
            }
            seen.push(known);
            match *known {
                "secret" => {
                    // Decoded into a zeroized buffer; the secret never sits in a plain String.
                    let value = SecretString::new(percent_decode(raw_value, true, "secret")?);
                    secret = Some(TotpSecret::from_base32(value.expose_secret())?);
                }
                "issuer" => parameter_issuer = Some(percent_decode(raw_value, true, "issuer")?),
                "algorithm" => {
                    params.algorithm = percent_decode(raw_value, true, "algorithm")?
                        .parse::<Algorithm>()
                        .map_err(|source| KeyUriError::BadParameter {
                            parameter: "algorithm",
                            source,
                        })?;
                }
                "digits" => params.digits = parse_digits(raw_value)?,
                "period" => params.period_secs = parse_period(raw_value)?,
                _ => {}
            }
        }
        let secret = secret.ok_or(KeyUriError::MissingSecret)?;

        let issuer = match (label_issuer, parameter_issuer) {
            (Some(label), Some(parameter)) if label != parameter => {
                return Err(KeyUriError::IssuerMismatch {
                    label: super::shorten(label),
                    parameter: super::shorten(&parameter),
                })
            }
            (Some(label), _) => Some(label.to_owned()),
            (None, parameter) => parameter,
        };
        Self::new(issuer.as_deref(), account, secret, params)
    }
}

fn parse_digits(raw: &str) -> Result<Digits, KeyUriError> {
    let bad = |source| KeyUriError::BadParameter {
        parameter: "digits",
        source,
    };
    let count = parse_decimal(raw).ok_or(KeyUriError::NotANumber {
        parameter: "digits",
    })?;
    u8::try_from(count)
        .map_err(|_| TotpParamsError::UnsupportedDigits(count))
        .and_then(Digits::try_from)
        .map_err(bad)
}

fn parse_period(raw: &str) -> Result<Period, KeyUriError> {
    let bad = |source| KeyUriError::BadParameter {
        parameter: "period",
        source,
    };
    let secs = parse_decimal(raw).ok_or(KeyUriError::NotANumber {
        parameter: "period",
    })?;
    u32::try_from(secs)
        .map_err(|_| TotpParamsError::PeriodOutOfRange(secs))
        .and_then(Period::from_secs)
        .map_err(bad)
}

/// Plain decimal digits only (no sign, no spaces); at most 12 of them, far beyond any valid value.
fn parse_decimal(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn check_name(name: &str, part: &'static str) -> Result<(), KeyUriError> {
    if name.is_empty() {
        return Err(KeyUriError::EmptyName { part });
    }
    if name.trim() != name {
        return Err(KeyUriError::SurroundingWhitespace { part });
    }
    if name.contains(':') {
        return Err(KeyUriError::ColonInName { part });
    }
    if name.chars().any(char::is_control) {
        return Err(KeyUriError::ControlCharacterInName { part });
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(KeyUriError::NameTooLong { part });
    }
    Ok(())
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Appends `text` with every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// Decodes `%XX` escapes (and, in the query, `+` as a space) into UTF-8 text.
fn percent_decode(
    text: &str,
    plus_is_space: bool,
    part: &'static str,
) -> Result<String, KeyUriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let high = bytes.get(index + 1).and_then(|b| hex_value(*b));
                let low = bytes.get(index + 2).and_then(|b| hex_value(*b));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(KeyUriError::BadPercentEncoding { part });
                };
                out.push(high << 4 | low);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|err| {
        // The bytes may be the secret: wipe them before dropping.
        let mut bytes = err.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        KeyUriError::NotUtf8 { part }
    })
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Window;
    use super::*;
    use crate::secret::SecretBytes;

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(SecretBytes::new(b"12345678901234567890".to_vec())).unwrap()
    }

    #[test]
    fn builds_the_google_authenticator_shape() {
        let uri = KeyUri::new(
            Some("ACME Co"),
            "john.doe@email.com",
            secret(),
            TotpParams::default(),
        )
        .unwrap();
        assert_eq!(
            uri.to_uri().expose_secret(),
            "otpauth://totp/ACME%20Co:john.doe%40email.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn reserved_and_non_ascii_characters_are_encoded() {
        let uri = KeyUri::new(
            Some("Zürich & Co/Lab?#"),
            "a+b c%d",
            secret(),
            TotpParams::default(),
        )
        .unwrap();
        let text = uri.to_uri();
        assert!(text.expose_secret().starts_with(
            "otpauth://totp/Z%C3%BCrich%20%26%20Co%2FLab%3F%23:a%2Bb%20c%25d?secret="
        ));
        let back = KeyUri::parse(text.expose_secret()).unwrap();
        assert_eq!(back.issuer(), Some("Zürich & Co/Lab?#"));
        assert_eq!(back.account(), "a+b c%d");
    }

    #[test]
    fn round_trips_every_parameter() {
        for algorithm in Algorithm::ALL {
            for digits in [Digits::Six, Digits::Eight] {
                let params = TotpParams {
                    algorithm,
                    digits,
                    period_secs: Period::from_secs(60).unwrap(),
                    window: Window::default(),
                };
                let uri = KeyUri::new(Some("warden"), "tech-7", secret(), params).unwrap();
                let back = KeyUri::parse(uri.to_uri().expose_secret()).unwrap();
                assert_eq!(back.params(), &params);
                assert_eq!(back.secret().expose_secret(), secret().expose_secret());
                assert_eq!(back.issuer(), Some("warden"));
                assert_eq!(back.account(), "tech-7");
            }
        }
    }

    #[test]
    fn parses_what_other_generators_write() {
        let cases = [
            // Minimal: defaults, no issuer.
            (
                "otpauth://totp/alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                None,
                "alice",
            ),
            // Issuer parameter first, encoded colon, `+` as space in the query, lower-case
            // secret, unknown parameters (repeated) ignored.
            (
                "otpauth://totp/ACME%20Co%3A%20alice%40example.org?issuer=ACME+Co&secret=gezdgnbvgy3tqojqgezdgnbvgy3tqojq&image=https%3A%2F%2Fx&image=y",
                Some("ACME Co"),
                "alice@example.org",
            ),
            // Upper-case scheme and type, literal colon and space.
            (
                "OTPAUTH://TOTP/ACME:  bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                Some("ACME"),
                "bob",
            ),
            // Issuer only as a parameter.
            (
                "otpauth://totp/carol?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Lab",
                Some("Lab"),
                "carol",
            ),
        ];
        for (text, issuer, account) in cases {
            let uri = KeyUri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(uri.issuer(), issuer, "{text}");
            assert_eq!(uri.account(), account, "{text}");
            assert_eq!(uri.params(), &TotpParams::default());
        }
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let s = "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let cases: Vec<(String, KeyUriError)> = vec![
            ("https://example.org/".into(), KeyUriError::NotOtpauth),
            ("otpauth:/totp/a?x".into(), KeyUriError::NotOtpauth),
            (
                format!("otpauth://hotp/a?{s}&counter=1"),
                KeyUriError::UnsupportedType("hotp".into()),
            ),
            (
                "otpauth://totp/a?issuer=x".into(),
                KeyUriError::MissingSecret,
            ),
            (format!("otpauth://totp/?{s}"), KeyUriError::MissingAccount),
            (
                format!("otpauth://totp/Issuer:?{s}"),
                KeyUriError::MissingAccount,
            ),
            (
                format!("otpauth://totp/a?{s}#frag"),
                KeyUriError::HasFragment,
            ),
            (
                format!("otpauth://totp/a%2?{s}"),
                KeyUriError::BadPercentEncoding { part: "label" },
            ),
            (
                format!("otpauth://totp/a%FF?{s}"),
                KeyUriError::NotUtf8 { part: "label" },
            ),
            (
                format!("otpauth://totp/a:b:c?{s}"),
                KeyUriError::ColonInName { part: "account" },
            ),
            (
                format!("otpauth://totp/a%0Ab?{s}"),
                KeyUriError::ControlCharacterInName { part: "account" },
            ),
            (
                format!("otpauth://totp/A:b?{s}&issuer=B"),
                KeyUriError::IssuerMismatch {
                    label: "A".into(),
                    parameter: "B".into(),
                },
            ),
            (
                format!("otpauth://totp/a?{s}&{s}"),
                KeyUriError::DuplicateParameter("secret"),
            ),
            (
                "otpauth://x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
                KeyUriError::UnsupportedType("x".into()),
            ),
            (
                "otpauth://GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ/a".into(),
                KeyUriError::UnsupportedType("?".into()),
            ),
            (
                "otpauth://totp?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
                KeyUriError::MissingAccount,
            ),
            (
                format!("otpauth://totp/a?{s}&algorithm=MD5"),
                KeyUriError::BadParameter {
                    parameter: "algorithm",
                    source: TotpParamsError::UnknownAlgorithm("MD5".into()),
                },
            ),
            (
                format!("otpauth://totp/a?{s}&digits=7"),
                KeyUriError::BadParameter {
                    parameter: "digits",
                    source: TotpParamsError::UnsupportedDigits(7),
                },
            ),
            (
                format!("otpauth://totp/a?{s}&digits=-6"),
                KeyUriError::NotANumber {
                    parameter: "digits",
                },
            ),
            (
                format!("otpauth://totp/a?{s}&period=0"),
                KeyUriError::BadParameter {
                    parameter: "period",
                    source: TotpParamsError::PeriodOutOfRange(0),
                },
            ),
            (
                format!("otpauth://totp/a?{s}&period=99999999999"),
                KeyUriError::BadParameter {
                    parameter: "period",
                    source: TotpParamsError::PeriodOutOfRange(99_999_999_999),
                },
            ),
            (
                "otpauth://totp/a?secret=JBSWY3DPEHPK3PXP".into(),
                KeyUriError::BadSecret(TotpSecretError::TooShort { bits: 80 }),
            ),
            (
                format!("otpauth://totp/{}?{s}", "a".repeat(5000)),
                KeyUriError::TooLong,
            ),
            (
                format!("otpauth://totp/{}?{s}", "a".repeat(300)),
                KeyUriError::NameTooLong { part: "account" },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(KeyUri::parse(&text).err(), Some(expected), "{text}");
        }
    }

    /// Verifies: V13
    #[test]
    fn errors_never_quote_the_secret() {
        let text = "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1";
        let err = KeyUri::parse(text).err().unwrap();
        assert!(!err.to_string().contains("GEZDGNBV"), "{err}");
        let text = "otpauth://totp/a?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=x";
        let err = KeyUri::parse(text).err().unwrap();
        assert!(!err.to_string().contains("GEZDGNBV"), "{err}");
    }

    #[test]
    fn names_are_checked_when_building() {
        let p = TotpParams::default();
        assert_eq!(
            KeyUri::new(Some("a:b"), "c", secret(), p).err(),
            Some(KeyUriError::ColonInName { part: "issuer" })
        );
        assert_eq!(
            KeyUri::new(None, "", secret(), p).err(),
            Some(KeyUriError::EmptyName { part: "account" })
        );
        assert_eq!(
            KeyUri::new(Some(""), "x", secret(), p).err(),
            Some(KeyUriError::EmptyName { part: "issuer" })
        );
        assert_eq!(
            KeyUri::new(Some("x"), " bob", secret(), p).err(),
            Some(KeyUriError::SurroundingWhitespace { part: "account" })
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "otpauth://totp/.{0,80}") {
            let _ = KeyUri::parse(&text);
        }

        #[test]
        fn names_round_trip(issuer in "[^:\\p{Cc}]{1,40}", account in "[^:\\p{Cc}]{1,40}") {
            proptest::prop_assume!(issuer.trim() == issuer && account.trim() == account);
            let uri = KeyUri::new(Some(&issuer), &account, secret(), TotpParams::default()).unwrap();
            let back = KeyUri::parse(uri.to_uri().expose_secret()).unwrap();
            proptest::prop_assert_eq!(back.issuer(), Some(issuer.as_str()));
            proptest::prop_assert_eq!(back.account(), account.as_str());
        }
    }
}
