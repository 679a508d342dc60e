//! Dashboard sessions and request checks, without I/O: the in-memory session table (time is a
//! value), the cookie, the CSRF token and the same-origin check.
//!
//! A session is opened only by a successful sign-in (password and one-time code, checked by
//! `warden_store::identity`), so a session id chosen before sign-in can never be used
//! (no fixation). The cookie carries a random 256-bit id ([`SessionToken`]); the table keeps
//! only its SHA-256, so a memory dump does not hand out live cookies. Each session has its own
//! CSRF token, which every state-changing request must send back (header `X-CSRF-Token` or
//! form field `csrf`), and such a request must also come from the dashboard's own origin
//! (`Origin`, or failing that `Referer`). Sessions end on sign-out, after `session_idle`
//! without a request, and `session_max` after sign-in whatever happens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use warden_store::identity::AuthenticatedUser;
use zeroize::Zeroizing;

/// The session cookie's value: 32 random bytes, base64url. Not `Debug`, not `Clone`; read it
/// only to set the cookie.
pub struct SessionToken(Zeroizing<String>);

impl SessionToken {
    fn random() -> Self {
        let bytes = Zeroizing::new(warden_core::rand::array::<32>());
        Self(Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*bytes),
        ))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// The table's key for a cookie value: its SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SessionKey([u8; 32]);

impl SessionKey {
    fn of(cookie: &str) -> Self {
        Self(warden_core::mac::sha256(cookie.as_bytes()))
    }
}

/// A per-session token the page sends back on every state-changing request. It is in the
/// page (not a cookie), so another site cannot read it.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl CsrfToken {
    fn random() -> Self {
        Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(warden_core::rand::array::<32>()),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with what the request sent.
    pub fn matches(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| warden_core::mac::ct_eq(g.as_bytes(), self.0.as_bytes()))
    }
}

/// Why a session ended without a sign-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    MaxAge,
    /// Signed in, but the table filled up meanwhile: no session was given.
    TooManySessions,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::MaxAge => "max_age",
            Self::TooManySessions => "too_many_sessions",
        }
    }
}

/// A signed-in person's session.
#[derive(Clone)]
pub struct WebSession {
    pub user: AuthenticatedUser,
    pub csrf: CsrfToken,
    pub created: Instant,
    pub last_seen: Instant,
}

/// What a cookie stands for.
pub enum Lookup {
    Valid(WebSession),
    /// It was a session, and it has ended (it is removed now).
    Expired {
        user: AuthenticatedUser,
        why: Expiry,
    },
    /// Not a session (never was, signed out, or the server restarted).
    Unknown,
}

/// The table is full: sign-ins are refused until a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many dashboard sessions are open ({0}); try again when one ends")]
pub struct TableFull(pub usize);

/// The server-side session table.
pub struct WebSessions {
    sessions: HashMap<SessionKey, WebSession>,
    idle: Duration,
    max_age: Duration,
    capacity: usize,
}

impl WebSessions {
    pub fn new(idle: Duration, max_age: Duration, capacity: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            idle,
            max_age,
            capacity,
        }
    }

    fn expiry(&self, s: &WebSession, now: Instant) -> Option<Expiry> {
        if now.saturating_duration_since(s.created) >= self.max_age {
            Some(Expiry::MaxAge)
        } else if now.saturating_duration_since(s.last_seen) >= self.idle {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// Opens a session for a user who just signed in.
    pub fn open(
        &mut self,
        user: AuthenticatedUser,
        now: Instant,
    ) -> Result<(SessionToken, CsrfToken), TableFull> {
        self.room()?;
        let token = SessionToken::random();
        let csrf = CsrfToken::random();
        self.sessions.insert(
            SessionKey::of(token.expose_secret()),
            WebSession {
                user,
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        Ok((token, csrf))
    }

    /// Looks the cookie up; a request (`touch`) counts as activity, a look (the live stream
    /// checking it is still signed in) does not.
    pub fn lookup(&mut self, cookie: &str, now: Instant, touch: bool) -> Lookup {
        let key = SessionKey::of(cookie);
        let Some(session) = self.sessions.get(&key) else {
            return Lookup::Unknown;
        };
        if let Some(why) = self.expiry(session, now) {
            let session = self.sessions.remove(&key).expect("present above");
            return Lookup::Expired {
                user: session.user,
                why,
            };
        }
        let session = self.sessions.get_mut(&key).expect("present above");
        if touch {
            session.last_seen = now;
        }
        Lookup::Valid(session.clone())
    }

    /// Replaces the user of a session (a role changed since sign-in).
    pub fn update_user(&mut self, cookie: &str, user: AuthenticatedUser) {
        if let Some(s) = self.sessions.get_mut(&SessionKey::of(cookie)) {
            s.user = user;
        }
    }

    /// Ends a session (sign-out, or the user may no longer act); returns it if it was open.
    pub fn close(&mut self, cookie: &str) -> Option<WebSession> {
        self.sessions.remove(&SessionKey::of(cookie))
    }

    /// Removes every session that has ended; returns them, for the record.
    pub fn sweep(&mut self, now: Instant) -> Vec<(AuthenticatedUser, Expiry)> {
        let ended: Vec<(SessionKey, Expiry)> = self
            .sessions
            .iter()
            .filter_map(|(k, s)| self.expiry(s, now).map(|why| (*k, why)))
            .collect();
        ended
            .into_iter()
            .filter_map(|(k, why)| self.sessions.remove(&k).map(|s| (s.user, why)))
            .collect()
    }

    /// Whether one more session may open.
    pub fn room(&self) -> Result<(), TableFull> {
        if self.sessions.len() >= self.capacity {
            return Err(TableFull(self.capacity));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The cookie's name: with TLS, the `__Host-` prefix (the browser then insists on `Secure`,
/// `Path=/` and no `Domain`, so no sibling host can set or shadow it).
pub fn cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-warden_dashboard"
    } else {
        "warden_dashboard"
    }
}

/// `Set-Cookie` for a new session (a session cookie: no `Max-Age`, gone with the browser).
pub fn set_cookie(token: &SessionToken, tls: bool) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict{}",
        cookie_name(tls),
        token.expose_secret(),
        if tls { "; Secure" } else { "" }
    ))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(tls: bool) -> String {
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        cookie_name(tls),
        if tls { "; Secure" } else { "" }
    )
}

/// The session cookie's value among the `Cookie` headers, if any.
pub fn session_cookie<'a>(
    cookie_headers: impl Iterator<Item = &'a str>,
    tls: bool,
) -> Option<&'a str> {
    let name = cookie_name(tls);
    cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Why a state-changing request was refused before it was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    #[error("the request names no origin (neither Origin nor Referer)")]
    Missing,
    #[error("the request comes from {0:?}, not from this dashboard")]
    Foreign(String),
    #[error("the request has no Host")]
    NoHost,
}

/// A state-changing request must come from the dashboard's own origin: `Origin` (or, when a
/// browser sends none, `Referer`) must be `scheme://host` of this request.
pub fn check_same_origin(
    scheme: &str,
    host: Option<&str>,
    origin: Option<&str>,
    referer: Option<&str>,
) -> Result<(), OriginRefusal> {
    let host = host.ok_or(OriginRefusal::NoHost)?;
    let own = format!("{scheme}://{host}");
    match (origin, referer) {
        (Some(o), _) if o != "null" => {
            if o.eq_ignore_ascii_case(&own) {
                Ok(())
            } else {
                Err(OriginRefusal::Foreign(o.chars().take(100).collect()))
            }
        }
        (_, Some(r)) => {
            let same = r.len() >= own.len()
                && r[..own.len()].eq_ignore_ascii_case(&own)
                && matches!(r.as_bytes().get(own.len()), None | Some(b'/'));
            if same {
                Ok(())
            } else {
                Err(OriginRefusal::Foreign(r.chars().take(100).collect()))
            }
        }
        (Some(o), None) => Err(OriginRefusal::Foreign(o.to_string())),
        (None, None) => Err(OriginRefusal::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let headers = ["a=1; warden_dashboard=abc ; b=2", "c=3"];
        assert_eq!(session_cookie(headers.into_iter(), false), Some("abc"));
        assert_eq!(session_cookie(headers.into_iter(), true), None);
        assert_eq!(
            session_cookie(["__Host-warden_dashboard=xyz"].into_iter(), true),
            Some("xyz")
        );
        assert_eq!(
            session_cookie(["warden_dashboard="].into_iter(), false),
            None
        );
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_with_tls() {
        let t = SessionToken::random();
        assert_eq!(t.expose_secret().len(), 43, "256 bits in base64url");
        let c = set_cookie(&t, true);
        assert!(c.starts_with("__Host-warden_dashboard="));
        assert!(c.contains("; HttpOnly; SameSite=Strict; Secure"));
        assert!(!set_cookie(&t, false).contains("Secure"));
    }

    #[test]
    fn same_origin_only() {
        let ok = |o, r| check_same_origin("https", Some("dash:9443"), o, r);
        assert!(ok(Some("https://dash:9443"), None).is_ok());
        assert!(ok(None, Some("https://dash:9443/")).is_ok());
        assert!(ok(None, Some("https://dash:9443")).is_ok());
        assert!(ok(Some("https://evil.example"), Some("https://dash:9443/")).is_err());
        assert!(ok(None, Some("https://dash:9443.evil.example/")).is_err());
        assert!(ok(Some("http://dash:9443"), None).is_err(), "scheme counts");
        assert_eq!(ok(None, None), Err(OriginRefusal::Missing));
        assert!(check_same_origin("https", None, Some("https://x"), None).is_err());
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let t = CsrfToken::random();
        assert!(t.matches(Some(t.as_str())));
        assert!(!t.matches(Some(&t.as_str()[..10])));
        assert!(!t.matches(None));
        assert!(!t.matches(Some("")));
    }
}
