//! Canonical forms: the details JSON as stored, and the binary encoding of an event that is MAC'd.
//!
//! Binary encoding (`docs/formats/audit-chain.md`, "Canonical encoding"):
//!
//! ```text
//! "warden-audit-v1" (15 bytes) ‖ seq (u64 BE) ‖ epoch (u32 BE)
//!   ‖ for timestamp, actor, action, subject, outcome, details: len (u32 BE) ‖ UTF-8 bytes
//! ```
//!
//! seq and epoch sit at fixed offsets, so the verifier can re-encode a row under another
//! hypothesised position by patching 12 bytes instead of rebuilding it.

use serde_json::Value;

use super::event::RecordRef;
use super::{AuditError, MAX_DETAILS_BYTES, MAX_DETAILS_DEPTH};

pub(crate) const DOMAIN_TAG: &[u8] = b"warden-audit-v1";
const SEQ_AT: usize = DOMAIN_TAG.len();
const EPOCH_AT: usize = SEQ_AT + 8;
const FIELDS_AT: usize = EPOCH_AT + 4;

/// Encodes `row`'s text fields with the given seq and epoch into `buf` (cleared first).
///
/// Returns `false` (and leaves `buf` unusable) only if a field is longer than `u32::MAX` bytes,
/// which no row written by warden can be: such a row cannot verify.
pub(crate) fn encode(buf: &mut Vec<u8>, seq: u64, epoch: u32, row: &RecordRef<'_>) -> bool {
    buf.clear();
    buf.extend_from_slice(DOMAIN_TAG);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&epoch.to_be_bytes());
    for field in [
        row.timestamp,
        row.actor,
        row.action,
        row.subject,
        row.outcome,
        row.details,
    ] {
        let Ok(len) = u32::try_from(field.len()) else {
            return false;
        };
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(field.as_bytes());
    }
    true
}

/// Rewrites the seq and epoch of an encoding made by [`encode`].
pub(crate) fn patch(buf: &mut [u8], seq: u64, epoch: u32) {
    if buf.len() >= FIELDS_AT {
        buf[SEQ_AT..EPOCH_AT].copy_from_slice(&seq.to_be_bytes());
        buf[EPOCH_AT..FIELDS_AT].copy_from_slice(&epoch.to_be_bytes());
    }
}

// Implements: V44
/// The canonical JSON text of `details`: an object, keys sorted by their UTF-8 bytes at every
/// level, no whitespace, strings escaped minimally (see [`write_string`]), numbers as
/// `serde_json` prints them (integers in decimal; finite floats in shortest round-trip form).
pub(crate) fn canonical_details(details: &Value) -> Result<String, AuditError> {
    if !details.is_object() {
        return Err(AuditError::DetailsNotObject);
    }
    let mut out = String::new();
    write_value(&mut out, details, 1)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), AuditError> {
    if out.len() > MAX_DETAILS_BYTES {
        return Err(AuditError::DetailsTooLarge);
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if number.as_f64().is_some_and(|f| !f.is_finite()) {
                return Err(AuditError::DetailsNonFinite);
            }
            out.push_str(&number.to_string());
        }
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            if depth > MAX_DETAILS_DEPTH {
                return Err(AuditError::DetailsTooDeep);
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            if depth > MAX_DETAILS_DEPTH {
                return Err(AuditError::DetailsTooDeep);
            }
            // Sort here rather than trust the map's order: serde_json's `preserve_order`
            // feature, if anything in the build enables it, keeps insertion order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item, depth + 1)?;
            }
            out.push('}');
        }
    }
    if out.len() > MAX_DETAILS_BYTES {
        return Err(AuditError::DetailsTooLarge);
    }
    Ok(())
}

/// A JSON string: `"` and `\` escaped with a backslash; U+0008, U+0009, U+000A, U+000C, U+000D
/// as `\b \t \n \f \r`; other characters below U+0020 as `\u00XX` (lowercase hex); everything
/// else, including non-ASCII, as raw UTF-8.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[(c as usize) >> 4]));
                out.push(char::from(b"0123456789abcdef"[(c as usize) & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Verifies: V44
    #[test]
    fn details_are_sorted_compact_and_escaped() {
        let details = json!({
            "b": [1, -2, 1.5, true, null, {"z": "", "a": "x"}],
            "a": "quote \" backslash \\ nl \n tab \t bell \u{7} ü",
            "B": {},
        });
        assert_eq!(
            canonical_details(&details).unwrap(),
            r#"{"B":{},"a":"quote \" backslash \\ nl \n tab \t bell \u0007 ü","b":[1,-2,1.5,true,null,{"a":"x","z":""}]}"#
        );
        // Same as serde_json's compact output with sorted keys.
        let text = canonical_details(&details).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&reparsed).unwrap(), text);
    }

    #[test]
    fn details_must_be_a_bounded_object() {
        assert_eq!(
            canonical_details(&json!([])),
            Err(AuditError::DetailsNotObject)
        );
        assert_eq!(
            canonical_details(&json!("x")),
            Err(AuditError::DetailsNotObject)
        );
        assert_eq!(canonical_details(&json!({})).unwrap(), "{}");
        let big = json!({ "x": "y".repeat(MAX_DETAILS_BYTES) });
        assert_eq!(canonical_details(&big), Err(AuditError::DetailsTooLarge));
        let mut deep = json!(1);
        for _ in 0..MAX_DETAILS_DEPTH {
            deep = json!({ "d": deep });
        }
        assert!(canonical_details(&deep).is_ok());
        deep = json!({ "d": deep });
        assert_eq!(canonical_details(&deep), Err(AuditError::DetailsTooDeep));
    }

    #[test]
    fn patching_moves_seq_and_epoch_only() {
        let row = RecordRef {
            seq: 1,
            epoch: 0,
            timestamp: "t",
            actor: "a",
            action: "b",
            subject: "",
            outcome: "success",
            details: "{}",
            mac: &[],
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        assert!(encode(&mut a, 7, 3, &row));
        assert!(encode(&mut b, 1, 0, &row));
        patch(&mut b, 7, 3);
        assert_eq!(a, b);
    }
}
