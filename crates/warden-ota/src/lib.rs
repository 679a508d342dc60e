//! warden-ota: the SCP81 / GlobalPlatform Amendment B ("RAM over HTTP") admin server.
//!
//! The protocol core does no I/O. A card's HTTP request, already parsed by hyper, becomes an
//! [`admin::AdminRequest`]; the session state machine in [`admin`] checks it against the
//! Amendment B rules and answers with a response decision and effects for the caller (deliver
//! this script, store these results). Request and response bodies are ETSI TS 102 226 scripts
//! ([`script`]) built on BER-TLV ([`tlv`]) and ISO/IEC 7816-4 APDUs ([`apdu`]); [`gp`] builds
//! the GlobalPlatform commands operators queue and decodes what the card answers (GET STATUS).
//!
//! [`plan`] holds the decisions between the state machine and the store, still without I/O:
//! which session a request belongs to (fresh, resumed, or a refused second session of a card),
//! and what a step means as store writes, [`audit`] records (actor, subject, details), events,
//! metrics and the response, applied only after the store committed.
//!
//! Around it, the adapters:
//!
//! * [`tls`] — PSK-TLS with OpenSSL: cipher groups, the PSK callback into the [`keys`] cache,
//!   the handshake trace (the crate's one FFI module) and failure classification;
//! * [`server`] — `Server::run(listener, shutdown)`: accept loop with connection and handshake
//!   limits, hyper HTTP/1.1 per connection, admin sessions per card (resume across
//!   connections), the [`session`] life cycle HANDSHAKING → CONNECTED → ACTIVE → CLOSED;
//! * [`store`] — the database thread (group commit) over `warden_store::ota` and the audit chain;
//! * [`events`] and [`metrics`] — the seed's event table for subscribers and JSON lines, and
//!   Prometheus metrics; [`dashboard`] is the operator dashboard (sign-in with warden users,
//!   live view over server-sent events, cards, history, pushes) and serves `/metrics`;
//! * [`simulator`] — a UICC that speaks the protocol as a PSK-TLS HTTP client, with a small
//!   GlobalPlatform card model, for tests, the demo and the load generator ([`bench`]);
//! * [`config`] and [`scriptfile`] — `ota.yaml` and script files, parsed once.
//!
//! [`fuzzing`] holds the bodies of the fuzz targets in `fuzz/`.
#![deny(unsafe_code)]

pub mod admin;
pub mod apdu;
pub mod audit;
pub mod bench;
pub mod config;
pub mod dashboard;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod gp;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod script;
pub mod scriptfile;
pub mod server;
pub mod session;
pub mod simulator;
pub mod store;
pub mod tls;
pub mod tlv;
