//! warden-ota: the SCP81 / GlobalPlatform Amendment B ("RAM over HTTP") admin server.
//!
//! This crate's protocol core does no I/O. A card's HTTP request, already parsed by the HTTP
//! adapter, becomes an [`admin::AdminRequest`]; the session state machine in [`admin`] checks it
//! against the Amendment B rules and answers with a response decision and effects for the
//! caller (deliver this script, store these results). Request and response bodies are
//! ETSI TS 102 226 scripts ([`script`]) built on BER-TLV ([`tlv`]) and ISO/IEC 7816-4 APDUs
//! ([`apdu`]); [`gp`] builds the GlobalPlatform commands operators queue and decodes what the
//! card answers (GET STATUS). [`fuzzing`] holds the bodies of the fuzz targets in `fuzz/`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod apdu;
#[doc(hidden)]
pub mod fuzzing;
pub mod gp;
pub mod script;
pub mod tlv;
