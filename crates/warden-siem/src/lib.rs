//! SIEM forwarding for warden: CEF over RFC 5425 with mutual TLS (see the SIEM issue).
