//! The collection schema: which collections exist, their fields and types, and how each is
//! classified (seed 002's data classification table). Parsed once, at the edge, from a YAML or
//! JSON document; every field value a caller hands in is checked against it here. Pure: no I/O.
//!
//! A collection's class decides who reaches it (`phi` and `treatment`: operators; `calibration`:
//! technicians; `configuration`: administrators; auditors read all). A field is PHI when its
//! collection is `phi` (unless marked `phi: false`) or when it is marked `phi: true` in a
//! `treatment` collection; PHI fields are sealed per record version under the `phi` key.
//! Calibration and configuration collections cannot hold PHI: technicians must never reach it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_core::rbac::Permission;

/// The classification of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Patient identifiers: every field PHI unless marked otherwise.
    Phi,
    /// Treatment parameters, outcomes, notes: PHI where marked.
    Treatment,
    /// Device calibration data: never PHI.
    Calibration,
    /// System configuration: never PHI.
    Configuration,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Self::Phi => "phi",
            Self::Treatment => "treatment",
            Self::Calibration => "calibration",
            Self::Configuration => "configuration",
        }
    }

    /// The permission to read this class's records.
    pub fn read_permission(self) -> Permission {
        match self {
            Self::Phi | Self::Treatment => Permission::RecordsTreatmentRead,
            Self::Calibration => Permission::RecordsCalibrationRead,
            Self::Configuration => Permission::RecordsConfigurationRead,
        }
    }

    /// The permission to create, update, delete and sign this class's records.
    pub fn write_permission(self) -> Permission {
        match self {
            Self::Phi | Self::Treatment => Permission::RecordsTreatmentWrite,
            Self::Calibration => Permission::RecordsCalibrationWrite,
            Self::Configuration => Permission::RecordsConfigurationWrite,
        }
    }

    fn may_hold_phi(self) -> bool {
        matches!(self, Self::Phi | Self::Treatment)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A string of at most 64 KiB.
    Text,
    /// A whole number (64-bit signed).
    Integer,
    /// A finite number.
    Number,
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 date and time with an offset, e.g. `2026-04-15T09:22:03Z`.
    Datetime,
    /// Any JSON object or array (structured parameters).
    Json,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Json => "json",
        }
    }
}

/// One field as the schema file declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Overrides the collection's default (PHI in `phi` collections, not PHI elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phi: Option<bool>,
    /// Free text for people reading the schema.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// One collection as the schema file declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    pub class: Class,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub fields: BTreeMap<String, Field>,
}

impl Collection {
    /// Whether `field` is PHI in this collection.
    pub fn is_phi(&self, field: &Field) -> bool {
        field.phi.unwrap_or(self.class == Class::Phi)
    }

    /// Whether any field of this collection is PHI.
    pub fn has_phi(&self) -> bool {
        self.fields.values().any(|f| self.is_phi(f))
    }
}

/// The schema document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Always `warden-records-schema`.
    pub format: String,
    pub collections: BTreeMap<String, Collection>,
}

/// Why a schema document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("the schema document is not valid: {0}")]
    Syntax(String),
    #[error("`format` is {0:?}; expected \"warden-records-schema\"")]
    Format(String),
    #[error("{0:?} is not a valid name: 1-64 characters of a-z 0-9 _, starting with a letter")]
    BadName(String),
    #[error("collection {0} has no fields")]
    NoFields(String),
    #[error("{collection}.{field} is marked phi, but a {class} collection cannot hold PHI (technicians reach it)")]
    PhiNotAllowed {
        collection: String,
        field: String,
        class: Class,
    },
    #[error("the schema defines no collections")]
    Empty,
    #[error("collection {collection} was {was}; a later schema cannot change it to {now}")]
    ClassChanged {
        collection: String,
        was: Class,
        now: Class,
    },
    #[error("{collection}.{field} exists in the applied schema; a later schema cannot {what}")]
    FieldChanged {
        collection: String,
        field: String,
        what: &'static str,
    },
    #[error("collection {0} exists in the applied schema; a later schema cannot remove it")]
    CollectionRemoved(String),
}

pub const FORMAT: &str = "warden-records-schema";

/// Largest schema document accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// A collection, field or record-store name: 1-64 characters of `a-z 0-9 _`, starting with a
/// letter.
pub fn check_name(name: &str) -> Result<(), SchemaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SchemaError::BadName(name.chars().take(80).collect()))
    }
}

impl Schema {
    /// Parses and checks a schema document (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::Syntax(format!(
                "longer than {MAX_SCHEMA_BYTES} bytes"
            )));
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let schema: Schema = serde_path_to_error::deserialize(de)
            .map_err(|e| SchemaError::Syntax(warden_core::report::report(&e)))?;
        schema.check()?;
        Ok(schema)
    }

    fn check(&self) -> Result<(), SchemaError> {
        if self.format != FORMAT {
            return Err(SchemaError::Format(self.format.chars().take(40).collect()));
        }
        if self.collections.is_empty() {
            return Err(SchemaError::Empty);
        }
        for (name, collection) in &self.collections {
            check_name(name)?;
            if collection.fields.is_empty() {
                return Err(SchemaError::NoFields(name.clone()));
            }
            for (field_name, field) in &collection.fields {
                check_name(field_name)?;
                if collection.is_phi(field) && !collection.class.may_hold_phi() {
                    return Err(SchemaError::PhiNotAllowed {
                        collection: name.clone(),
                        field: field_name.clone(),
                        class: collection.class,
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks that this schema may follow `applied`: collections and fields may be added and
    /// `required` and descriptions may change; nothing may be removed, retyped or reclassified
    /// (records written under the earlier schema must keep their meaning and their sealing).
    pub fn check_evolution(&self, applied: &Schema) -> Result<(), SchemaError> {
        for (name, old) in &applied.collections {
            let Some(new) = self.collections.get(name) else {
                return Err(SchemaError::CollectionRemoved(name.clone()));
            };
            if new.class != old.class {
                return Err(SchemaError::ClassChanged {
                    collection: name.clone(),
                    was: old.class,
                    now: new.class,
                });
            }
            for (field_name, old_field) in &old.fields {
                let changed = |what| SchemaError::FieldChanged {
                    collection: name.clone(),
                    field: field_name.clone(),
                    what,
                };
                let Some(new_field) = new.fields.get(field_name) else {
                    return Err(changed("remove it"));
                };
                if new_field.kind != old_field.kind {
                    return Err(changed("change its type"));
                }
                if new.is_phi(new_field) != old.is_phi(old_field) {
                    return Err(changed("change whether it is PHI"));
                }
            }
        }
        Ok(())
    }

    /// The canonical JSON form, as stored and hashed.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a schema always serializes")
    }

    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }
}

/// Why a record's id or field values were refused. Messages name the field and the rule, never
/// the value (it may be PHI).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("a record id is 1-128 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit (ids are not sealed: never put PHI in them)")]
    BadRecordId,
    #[error("{collection} has no field {field:?}")]
    UnknownField { collection: String, field: String },
    #[error("{collection}.{field} must be {expected}")]
    WrongType {
        collection: String,
        field: String,
        expected: &'static str,
    },
    #[error("{collection}.{field} is required")]
    Missing { collection: String, field: String },
    #[error("{collection}.{field} is longer than {max} bytes")]
    TooLong {
        collection: String,
        field: String,
        max: usize,
    },
    #[error("a delete needs a reason (1-1024 characters)")]
    BadReason,
    #[error("the fields must be a JSON object")]
    NotAnObject,
}

/// Largest text or JSON value of one field, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A record id: 1-128 characters of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit.
/// Ids are stored and audited in clear (they go to the SIEM): they must not carry PHI.
pub fn check_record_id(id: &str) -> Result<(), InputError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InputError::BadRecordId)
    }
}

/// A record's fields split by classification.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub plain: Map<String, Value>,
    pub phi: Map<String, Value>,
}

impl Collection {
    /// Applies `changes` (a JSON object; `null` removes a field) to `previous` and checks the
    /// result against this collection: known fields only, values of the declared types,
    /// required fields present. Returns the new snapshot split into plain and PHI fields.
    pub fn apply(
        &self,
        name: &str,
        previous: Split,
        changes: &Map<String, Value>,
    ) -> Result<Split, InputError> {
        let mut next = previous;
        for (field_name, value) in changes {
            let Some(field) = self.fields.get(field_name) else {
                return Err(InputError::UnknownField {
                    collection: name.into(),
                    field: field_name.chars().take(80).collect(),
                });
            };
            let target = if self.is_phi(field) {
                &mut next.phi
            } else {
                &mut next.plain
            };
            if value.is_null() {
                target.remove(field_name);
                continue;
            }
            check_value(name, field_name, field.kind, value)?;
            target.insert(field_name.clone(), value.clone());
        }
        for (field_name, field) in &self.fields {
            if field.required
                && !next.plain.contains_key(field_name)
                && !next.phi.contains_key(field_name)
            {
                return Err(InputError::Missing {
                    collection: name.into(),
                    field: field_name.clone(),
                });
            }
        }
        Ok(next)
    }
}

fn check_value(
    collection: &str,
    field: &str,
    kind: FieldType,
    value: &Value,
) -> Result<(), InputError> {
    let wrong = |expected| InputError::WrongType {
        collection: collection.into(),
        field: field.into(),
        expected,
    };
    let too_long = || InputError::TooLong {
        collection: collection.into(),
        field: field.into(),
        max: MAX_VALUE_BYTES,
    };
    match kind {
        FieldType::Text => {
            let text = value.as_str().ok_or_else(|| wrong("text"))?;
            if text.len() > MAX_VALUE_BYTES {
                return Err(too_long());
            }
        }
        FieldType::Integer => {
            value.as_i64().ok_or_else(|| wrong("an integer"))?;
        }
        FieldType::Number => {
            value
                .as_f64()
                .filter(|n| n.is_finite())
                .ok_or_else(|| wrong("a finite number"))?;
        }
        FieldType::Boolean => {
            value.as_bool().ok_or_else(|| wrong("true or false"))?;
        }
        FieldType::Date => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            value
                .as_str()
                .filter(|t| t.len() == 10 && time::Date::parse(t, &format).is_ok())
                .ok_or_else(|| wrong("a date, YYYY-MM-DD"))?;
        }
        FieldType::Datetime => {
            value
                .as_str()
                .filter(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .is_ok()
                })
                .ok_or_else(|| wrong("an RFC 3339 date-time, e.g. 2026-04-15T09:22:03Z"))?;
        }
        FieldType::Json => {
            if !(value.is_object() || value.is_array()) {
                return Err(wrong("a JSON object or array"));
            }
            if serde_json::to_string(value).map_or(usize::MAX, |t| t.len()) > MAX_VALUE_BYTES {
                return Err(too_long());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EXAMPLE: &str = "
format: warden-records-schema
collections:
  patients:
    class: phi
    fields:
      mrn: { type: text, required: true }
      name: { type: text }
      dob: { type: date }
      site: { type: text, phi: false }
  treatments:
    class: treatment
    fields:
      patient: { type: text, required: true }
      energy_j: { type: number }
      pulses: { type: integer }
      notes: { type: text, phi: true }
  calibrations:
    class: calibration
    fields:
      output_mw: { type: number, required: true }
";

    fn changes(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn example_parses_and_classifies() {
        let schema = Schema::parse(EXAMPLE).unwrap();
        let patients = schema.collection("patients").unwrap();
        assert!(patients.is_phi(&patients.fields["mrn"]));
        assert!(!patients.is_phi(&patients.fields["site"]));
        let treatments = schema.collection("treatments").unwrap();
        assert!(treatments.is_phi(&treatments.fields["notes"]));
        assert!(!treatments.is_phi(&treatments.fields["energy_j"]));
        assert!(!schema.collection("calibrations").unwrap().has_phi());
        // The canonical form parses back to the same schema.
        assert_eq!(Schema::parse(&schema.canonical_json()).unwrap(), schema);
    }

    #[test]
    fn calibration_cannot_hold_phi() {
        let text = EXAMPLE.replace(
            "output_mw: { type: number, required: true }",
            "output_mw: { type: number, phi: true }",
        );
        assert!(matches!(
            Schema::parse(&text),
            Err(SchemaError::PhiNotAllowed { .. })
        ));
    }

    #[test]
    fn bad_documents_name_the_problem() {
        let err = Schema::parse(&EXAMPLE.replace("type: date", "type: day")).unwrap_err();
        assert!(err.to_string().contains("dob"), "{err}");
        let err =
            Schema::parse(&EXAMPLE.replace("required: true }", "requird: true }")).unwrap_err();
        assert!(err.to_string().contains("requird"), "{err}");
        assert!(matches!(
            Schema::parse(&EXAMPLE.replace("  patients:", "  Patients:")),
            Err(SchemaError::BadName(_))
        ));
        assert!(matches!(
            Schema::parse("format: other\ncollections: {}"),
            Err(SchemaError::Format(_))
        ));
    }

    #[test]
    fn evolution_adds_but_never_removes_or_reclassifies() {
        let applied = Schema::parse(EXAMPLE).unwrap();
        let added = Schema::parse(&format!(
            "{EXAMPLE}  settings:\n    class: configuration\n    fields:\n      mode: {{ type: text }}\n"
        ))
        .unwrap();
        added.check_evolution(&applied).unwrap();
        let reclassified = Schema::parse(
            &EXAMPLE.replace("notes: { type: text, phi: true }", "notes: { type: text }"),
        )
        .unwrap();
        assert!(matches!(
            reclassified.check_evolution(&applied),
            Err(SchemaError::FieldChanged { .. })
        ));
        assert!(matches!(
            applied.check_evolution(&added),
            Err(SchemaError::CollectionRemoved(_))
        ));
    }

    #[test]
    fn values_are_checked_and_split() {
        let schema = Schema::parse(EXAMPLE).unwrap();
        let patients = schema.collection("patients").unwrap();
        let split = patients
            .apply(
                "patients",
                Split::default(),
                &changes(json!({"mrn": "MRN-1", "dob": "1970-02-28", "site": "A"})),
            )
            .unwrap();
        assert_eq!(split.plain, changes(json!({"site": "A"})));
        assert_eq!(
            split.phi,
            changes(json!({"mrn": "MRN-1", "dob": "1970-02-28"}))
        );
        // Merge: a later change keeps what it does not name, and null removes.
        let next = patients
            .apply(
                "patients",
                split,
                &changes(json!({"site": null, "name": "X"})),
            )
            .unwrap();
        assert!(next.plain.is_empty());
        assert_eq!(next.phi.len(), 3);
        for (bad, expected) in [
            (json!({"mrn": 5}), "text"),
            (json!({"mrn": "M", "dob": "1970-02-30"}), "date"),
            (json!({"mrn": "M", "nope": 1}), "no field"),
            (json!({"name": "no mrn"}), "required"),
        ] {
            let err = patients
                .apply("patients", Split::default(), &changes(bad))
                .unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        let treatments = schema.collection("treatments").unwrap();
        let err = treatments
            .apply(
                "treatments",
                Split::default(),
                &changes(json!({"patient": "p", "pulses": 1.5})),
            )
            .unwrap_err();
        assert!(err.to_string().contains("integer"), "{err}");
    }

    #[test]
    fn record_ids() {
        for good in ["p-0001", "T.2026:04:15_1", "a"] {
            check_record_id(good).unwrap();
        }
        for bad in ["", "-x", "a b", "é", &"a".repeat(129), "a/b"] {
            assert!(check_record_id(bad).is_err(), "{bad:?}");
        }
    }
}
