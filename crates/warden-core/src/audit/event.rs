//! Audit events: what a caller hands in ([`NewEvent`]), what the chain hands back to store
//! ([`AuditRecord`]), and what the store hands the verifier when it reads rows back
//! ([`RecordRef`], untrusted, borrowed, never rejected).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::keys::ChainMac;
use super::{AuditError, MAX_TEXT_BYTES};

/// What came of the audited action. Stored and MAC'd as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Self::Success, Self::Failure, Self::Denied, Self::Error];

    /// The lowercase name, as stored and MAC'd.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|o| o.as_str() == text).ok_or(())
    }
}

/// An RFC 3339 UTC timestamp with exactly six fractional digits: `2026-11-22T10:00:00.123456Z`
/// (27 bytes). Years 0000–9999; seconds 00–59 (no leap second). Supplied by the caller: the
/// audit chain never reads a clock.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    const LEN: usize = 27;

    /// Checks the shape and the calendar (month 1–12, day within the month, 24-hour time).
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let b = text.as_bytes();
        if b.len() != Self::LEN {
            return Err(AuditError::BadTimestamp("expected exactly 27 characters"));
        }
        let punct = [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ];
        for (at, want) in punct {
            if b[at] != want {
                return Err(AuditError::BadTimestamp(
                    "separators must be '-', 'T', ':', '.' and a final 'Z' (UTC)",
                ));
            }
        }
        let digits = |from: usize, to: usize| -> Result<u32, AuditError> {
            b[from..to].iter().try_fold(0u32, |acc, &c| {
                if c.is_ascii_digit() {
                    Ok(acc * 10 + u32::from(c - b'0'))
                } else {
                    Err(AuditError::BadTimestamp("expected a digit"))
                }
            })
        };
        let year = digits(0, 4)?;
        let month = digits(5, 7)?;
        let day = digits(8, 10)?;
        let hour = digits(11, 13)?;
        let minute = digits(14, 16)?;
        let second = digits(17, 19)?;
        digits(20, 26)?;
        if !(1..=12).contains(&month) {
            return Err(AuditError::BadTimestamp("month out of range"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(AuditError::BadTimestamp("day out of range for the month"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(AuditError::BadTimestamp("time of day out of range"));
        }
        Ok(Self(text.to_owned()))
    }

    /// Formats microseconds since 1970-01-01T00:00:00Z (negative is before 1970).
    pub fn from_unix_micros(micros: i64) -> Result<Self, AuditError> {
        let days = micros.div_euclid(86_400_000_000);
        let in_day = micros.rem_euclid(86_400_000_000);
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return Err(AuditError::BadTimestamp("year outside 0000-9999"));
        }
        let secs = in_day / 1_000_000;
        // Written digit by digit: every audit record and event takes one, and `format!` was a
        // visible share of the OTA server's database thread.
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, i64::from(month));
        put(8, 2, i64::from(day));
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        put(20, 6, in_day % 1_000_000);
        Ok(Self(String::from_utf8_lossy(&out).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl FromStr for Timestamp {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, AuditError> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An event to append. `details` must be a JSON object; it is stored canonicalized.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub timestamp: Timestamp,
    /// Who acted: a user name, a card id, `warden` for the system itself. 1–256 bytes.
    pub actor: String,
    /// What was done, e.g. `session.open`, `login.totp`. 1–256 bytes; `audit.epoch` is reserved.
    pub action: String,
    /// What it was done to: a device, a port, a file. 0–256 bytes.
    pub subject: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

impl NewEvent {
    /// An event with empty details (`{}`).
    pub fn new(
        timestamp: Timestamp,
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            timestamp,
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            outcome,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Replaces the details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Checks one text field: length cap, non-empty if required, no control characters.
pub(crate) fn check_text(
    field: &'static str,
    text: &str,
    required: bool,
) -> Result<(), AuditError> {
    if required && text.is_empty() {
        return Err(AuditError::EmptyField { field });
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(AuditError::FieldTooLong {
            field,
            len: text.len(),
            max: MAX_TEXT_BYTES,
        });
    }
    if let Some((at, _)) = text.char_indices().find(|&(_, c)| is_forbidden_char(c)) {
        return Err(AuditError::ForbiddenChar { field, at });
    }
    Ok(())
}

/// `text` made fit for an actor or subject field: forbidden characters escaped (`\u{1b}`),
/// and when longer than the cap, its end kept behind a leading `…` (for a path, the file name
/// is what matters).
pub fn field_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_forbidden_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if out.len() <= MAX_TEXT_BYTES {
        return out;
    }
    let mut start = out.len() - (MAX_TEXT_BYTES - '…'.len_utf8());
    while !out.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &out[start..])
}

/// Control characters (C0, DEL, C1), bidi embeddings/overrides/isolates and the line and
/// paragraph separators: anything that can make an exported row or a log line lie about itself.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// One row of the chain, as produced by [`super::ChainState::append`]: store every field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub epoch: u32,
    /// RFC 3339 UTC with microseconds.
    pub timestamp: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: Outcome,
    /// Canonical JSON (sorted keys, no whitespace); MAC'd byte for byte as it is here.
    pub details: String,
    pub mac: ChainMac,
}

impl AuditRecord {
    /// A borrowed view, as the verifier takes it.
    pub fn view(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            epoch: self.epoch,
            timestamp: &self.timestamp,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            outcome: self.outcome.as_str(),
            details: &self.details,
            mac: &self.mac.0,
        }
    }

    /// True for the epoch markers written by [`super::ChainState::evolve`].
    pub fn is_epoch_marker(&self) -> bool {
        self.action == super::EPOCH_MARKER_ACTION
    }
}

/// A stored row as read back, borrowed from wherever the store keeps it.
///
/// Untrusted: any field may have been altered, so nothing here is validated; the verifier
/// MACs the bytes exactly as given. `outcome` is the stored text and `mac` the stored bytes
/// (a MAC of the wrong length is simply a mismatch).
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub epoch: u32,
    pub timestamp: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub outcome: &'a str,
    pub details: &'a str,
    pub mac: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_checked_for_shape_and_calendar() {
        for good in [
            "2026-11-22T10:00:00.123456Z",
            "2024-02-29T23:59:59.999999Z",
            "0000-01-01T00:00:00.000000Z",
        ] {
            assert_eq!(Timestamp::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00.123456+00:00",
            "2026-11-22 10:00:00.123456Z",
            "2026-11-22T10:00:00.12345Z ",
            "2026-13-22T10:00:00.123456Z",
            "2025-02-29T10:00:00.123456Z",
            "2026-04-31T10:00:00.123456Z",
            "2026-11-22T24:00:00.123456Z",
            "2026-11-22T10:00:60.123456Z",
            "2026-11-22T10:00:00.12345aZ",
            "2026-11-22t10:00:00.123456z",
            "２026-11-22T10:00:00.12345Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unix_micros_format_as_rfc3339() {
        assert_eq!(
            Timestamp::from_unix_micros(0).unwrap().as_str(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(1_795_341_600_123_456)
                .unwrap()
                .as_str(),
            "2026-11-22T10:00:00.123456Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(-1).unwrap().as_str(),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(951_782_400_000_000)
                .unwrap()
                .as_str(),
            "2000-02-29T00:00:00.000000Z"
        );
        assert!(Timestamp::from_unix_micros(i64::MAX).is_err());
        assert!(Timestamp::from_unix_micros(i64::MIN).is_err());
    }

    #[test]
    fn field_text_escapes_and_keeps_the_end_of_long_text() {
        assert_eq!(field_text("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        let long = format!("/{}/name.sealed", "d".repeat(400));
        let fitted = field_text(&long);
        assert!(fitted.len() <= MAX_TEXT_BYTES, "{}", fitted.len());
        assert!(fitted.starts_with('…') && fitted.ends_with("/name.sealed"));
        assert!(check_text("subject", &fitted, true).is_ok());
        assert!(check_text("subject", &field_text("\u{202e}x\u{2028}"), true).is_ok());
    }

    #[test]
    fn text_fields_reject_control_and_bidi_characters() {
        assert!(check_text("actor", "alice", true).is_ok());
        assert!(check_text("subject", "", false).is_ok());
        assert_eq!(
            check_text("actor", "", true),
            Err(AuditError::EmptyField { field: "actor" })
        );
        assert_eq!(
            check_text("actor", "al\nice", true),
            Err(AuditError::ForbiddenChar {
                field: "actor",
                at: 2
            })
        );
        for c in ['\0', '\u{7f}', '\u{85}', '\u{202e}', '\u{2066}', '\u{2028}'] {
            assert!(check_text("subject", &format!("x{c}"), false).is_err());
        }
        assert!(check_text("subject", "Gerät ü 治療", false).is_ok());
        assert!(matches!(
            check_text("action", &"a".repeat(257), true),
            Err(AuditError::FieldTooLong { len: 257, .. })
        ));
    }

    #[test]
    fn outcomes_are_lowercase() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
        }
        assert!("Success".parse::<Outcome>().is_err());
    }
}
