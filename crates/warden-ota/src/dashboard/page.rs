//! The dashboard's HTML, rendered on the server, and its two static files (a small vanilla
//! script and a style sheet, embedded in the binary). Every value that reaches the HTML goes
//! through [`escape`]; the script builds what it adds with `textContent` only, never markup, so
//! card identities and event fields (which a card or a scanner chooses) stay text. No inline
//! script or style: the Content-Security-Policy allows neither.

use warden_core::rbac::Role;

use super::push::Template;

pub const SCRIPT: &str = include_str!("assets/dashboard.js");
pub const STYLE: &str = include_str!("assets/dashboard.css");

/// The Content-Security-Policy of every response: only our own script, style and stream.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(title: &str, csrf: Option<&str>) -> String {
    let csrf = csrf.map_or(String::new(), |t| {
        format!("<meta name=\"csrf-token\" content=\"{}\">", escape(t))
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title>{csrf}<link rel=\"stylesheet\" href=\"/static/dashboard.css\">",
        escape(title)
    )
}

/// The sign-in page, with the reason the last attempt failed.
pub fn sign_in(error: Option<&str>, username: &str) -> String {
    let mut page = head("warden OTA — sign in", None);
    page.push_str("</head><body class=\"signin\"><main><h1>warden OTA dashboard</h1>");
    if let Some(e) = error {
        page.push_str(&format!(
            "<p class=\"error\" id=\"signin-error\" role=\"alert\">{}</p>",
            escape(e)
        ));
    }
    page.push_str(&format!(
        "<form method=\"post\" action=\"/signin\" id=\"signin-form\">\
         <label>User <input name=\"username\" id=\"username\" autocomplete=\"username\" required value=\"{}\"></label>\
         <label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>One-time code <input name=\"code\" id=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6,8}}\"></label>\
         <button type=\"submit\" id=\"signin\">Sign in</button></form>\
         <p class=\"note\">Sign in with your warden user: password and the code from your authenticator. \
         Failed attempts count toward the lockout.</p></main></body></html>",
        escape(username)
    ));
    page
}

/// What the page needs to know about the person.
pub struct Viewer<'a> {
    pub username: &'a str,
    pub role: Role,
    pub can_push: bool,
    pub csrf: &'a str,
}

/// The operator page: a skeleton the script fills from the live stream.
pub fn app(viewer: &Viewer<'_>, templates: &[Template]) -> String {
    let mut page = head("warden OTA dashboard", Some(viewer.csrf));
    page.push_str("<script src=\"/static/dashboard.js\" defer></script></head>");
    page.push_str(&format!(
        "<body data-can-push=\"{}\"><header><h1>warden OTA</h1>\
         <span id=\"conn\" class=\"conn\">connecting…</span>\
         <span class=\"who\">signed in as <b id=\"who\">{}</b> ({})</span>\
         <form method=\"post\" action=\"/signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"signout\">Sign out</button></form></header>",
        viewer.can_push,
        escape(viewer.username),
        escape(viewer.role.name()),
        escape(viewer.csrf)
    ));
    page.push_str(
        "<div id=\"alarms\" aria-live=\"polite\"></div>\
         <section class=\"stats\">\
         <div class=\"stat\"><span class=\"n\" id=\"stat-connected\">–</span><span>connected</span></div>\
         <div class=\"stat\"><span class=\"n\" id=\"stat-active\">–</span><span>active</span></div>\
         <div class=\"stat\"><span class=\"n\" id=\"stat-pending\">–</span><span>scripts queued</span></div>\
         <div class=\"stat\"><span class=\"n\" id=\"stat-in-flight\">–</span><span>in flight</span></div>\
         <div class=\"stat\"><span class=\"n\" id=\"stat-cards\">–</span><span>cards</span></div>\
         <div class=\"stat\"><span class=\"n\" id=\"stat-sessions-ended\">0</span><span>sessions ended (live)</span></div>\
         </section><main>\
         <section id=\"live\"><h2>Live sessions</h2><table id=\"sessions\"><thead><tr>\
         <th>card</th><th>state</th><th>peer</th><th>TLS</th><th>cipher</th><th>requests</th><th>since</th>\
         </tr></thead><tbody></tbody></table></section>\
         <section id=\"results\"><h2>Results as they arrive</h2><table id=\"results-table\"><thead><tr>\
         <th>time</th><th>card</th><th>script</th><th>result</th><th>C-APDU</th><th>R-APDU</th><th>SW</th><th>round trip</th>\
         </tr></thead><tbody></tbody></table></section>\
         <section id=\"cards\"><h2>Cards</h2>\
         <input id=\"card-search\" type=\"search\" placeholder=\"search identities\" aria-label=\"search cards\">\
         <table id=\"card-table\"><thead><tr><th>card</th><th>queued</th><th>last session</th><th>state</th></tr></thead>\
         <tbody></tbody></table></section>\
         <section id=\"history\"><h2>Card history <span id=\"history-card\"></span></h2>\
         <div id=\"history-body\"><p class=\"note\">Choose a card.</p></div></section>",
    );
    if viewer.can_push {
        let mut options = String::from("<option value=\"\">— template —</option>");
        for (i, t) in templates.iter().enumerate() {
            options.push_str(&format!(
                "<option value=\"{i}\" data-hex=\"{}\" data-yaml=\"{}\">{}</option>",
                escape(&t.hex),
                escape(&t.yaml),
                escape(t.name)
            ));
        }
        page.push_str(&format!(
            "<section id=\"push\"><h2>Push a script</h2><form id=\"push-form\">\
             <label>Cards <textarea id=\"push-cards\" rows=\"3\" placeholder=\"one identity per line, or prefix:UICC_\"></textarea></label>\
             <label>Template <select id=\"push-template\">{options}</select></label>\
             <fieldset><legend>Format</legend>\
             <label><input type=\"radio\" name=\"format\" value=\"hex\" id=\"format-hex\" checked> C-APDUs in hex, one per line</label>\
             <label><input type=\"radio\" name=\"format\" value=\"yaml\" id=\"format-yaml\"> YAML script</label></fieldset>\
             <label>Script <textarea id=\"push-script\" rows=\"8\" spellcheck=\"false\"></textarea></label>\
             <label>Label <input id=\"push-label\" maxlength=\"100\"></label>\
             <div class=\"buttons\"><button type=\"button\" id=\"push-check\">Check</button>\
             <button type=\"submit\" id=\"push-submit\">Queue</button></div>\
             <div id=\"push-result\" role=\"status\"></div></form></section>"
        ));
    } else {
        page.push_str(&format!(
            "<section id=\"push\"><h2>Push a script</h2><p class=\"note\" id=\"push-denied\">The {} role may watch but not push scripts (that needs ota.script.push).</p></section>",
            escape(viewer.role.name())
        ));
    }
    page.push_str(
        "<section id=\"events\"><h2>Events</h2><ol id=\"event-list\" reversed></ol></section>\
         </main></body></html>",
    );
    page
}

/// The page of a dashboard that runs without sign-in: only `/metrics` and read-only JSON.
pub fn read_only() -> String {
    let mut page = head("warden OTA", None);
    page.push_str(
        "</head><body><main><h1>warden OTA admin server</h1>\
         <p>This dashboard runs without sign-in (<code>dashboard.sign_in: false</code>): it serves \
         <a href=\"/metrics\">/metrics</a>, <a href=\"/api/sessions\">/api/sessions</a> and \
         <a href=\"/api/events\">/api/events</a> only.</p></main></body></html>",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let page = app(
            &Viewer {
                username: "olga",
                role: Role::Operator,
                can_push: true,
                csrf: "tok\"en",
            },
            &[Template {
                name: "x",
                hex: "<b>".into(),
                yaml: "a\"b".into(),
            }],
        );
        assert!(page.contains("content=\"tok&quot;en\""));
        assert!(page.contains("data-hex=\"&lt;b&gt;\" data-yaml=\"a&quot;b\""));
        assert!(!page.contains("<b>\""));
        let signin = sign_in(Some("<img src=x>"), "\"><script>");
        assert!(signin.contains("&lt;img src=x&gt;"));
        assert!(!signin.contains("<script>"));
    }

    #[test]
    fn no_inline_script_or_style() {
        let page = app(
            &Viewer {
                username: "a",
                role: Role::Auditor,
                can_push: false,
                csrf: "t",
            },
            &[],
        );
        for p in [page, sign_in(None, ""), read_only()] {
            assert!(!p.contains("<script>"), "{p}");
            assert!(!p.contains("<style"), "{p}");
            assert!(!p.contains(" style=") && !p.contains(" onclick="), "{p}");
        }
    }
}
