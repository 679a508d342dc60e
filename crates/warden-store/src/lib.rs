//! SQLCipher storage for warden (see the store issue).
