//! The one place in warden with `unsafe` code: OpenSSL's handshake message callback, which the
//! `openssl` and `openssl-sys` crates do not expose.
//!
//! `SSL_CTX_set_msg_callback` makes OpenSSL call [`on_message`] for every protocol message it
//! sends or receives (handshake messages, alerts, change-cipher-spec), including TLS 1.3
//! messages after decryption. The callback finds the connection's [`ConnTrace`] in the `SSL`'s
//! ex_data (set by `tls::ServerTls::new_ssl` / the client) and records the message type there
//! (and, for a ClientHello, the PSK key exchange modes it offers); everything after the pointer
//! conversions is safe code in `super::observe`.
//!
//! The info callback (`SSL_CTX_set_info_callback`) is not needed: alerts sent and received come
//! through the message callback too (content type 21).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

use foreign_types::ForeignTypeRef;
use openssl::ssl::{SslContextBuilder, SslRef};

type MsgCallback = unsafe extern "C" fn(
    write_p: c_int,
    version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut openssl_sys::SSL,
    arg: *mut c_void,
);

extern "C" {
    // void SSL_CTX_set_msg_callback(SSL_CTX *ctx, void (*cb)(int write_p, int version,
    //     int content_type, const void *buf, size_t len, SSL *ssl, void *arg));
    // A function (not a macro) in libssl 1.1.1 and 3.x.
    fn SSL_CTX_set_msg_callback(ctx: *mut openssl_sys::SSL_CTX, cb: Option<MsgCallback>);
}

/// Installs [`on_message`] on every connection made from this context.
pub(super) fn install_message_callback(builder: &mut SslContextBuilder) {
    // SAFETY: `builder.as_ptr()` is the builder's live, owned SSL_CTX. The callback is a plain
    // `extern "C"` function with the exact signature OpenSSL declares, it lives for the whole
    // program, and it uses no callback argument (none is set, so `arg` stays NULL).
    unsafe { SSL_CTX_set_msg_callback(builder.as_ptr(), Some(on_message)) }
}

/// Called by OpenSSL on the thread driving the handshake, for each message.
unsafe extern "C" fn on_message(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut openssl_sys::SSL,
    _arg: *mut c_void,
) {
    if ssl.is_null() || buf.is_null() || len == 0 {
        return;
    }
    // SAFETY: OpenSSL passes `buf` pointing at `len` readable bytes of the message (non-NULL,
    // checked above) for the duration of this call. The slice is only borrowed by
    // `super::observe`, which returns before we do and copies out what it keeps (a handshake
    // message's type, an alert's level and description, a ClientHello's PSK key exchange
    // modes).
    let message = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    // SAFETY: `ssl` is the non-NULL SSL object this message belongs to, alive during the call.
    // We only take a shared reference and only read its ex_data through the safe `openssl` API;
    // nothing else mutates that ex_data slot after the connection was set up.
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    super::observe(ssl, write_p != 0, content_type, message);
}
