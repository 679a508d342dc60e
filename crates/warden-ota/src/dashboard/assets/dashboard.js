// warden OTA dashboard: fills the server-rendered page from the live stream (/api/stream) and
// the JSON API. Everything shown is set with textContent (never markup): card identities and
// event fields come from cards and scanners.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const canPush = document.body.dataset.canPush === "true";
  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells, cls) {
    const tr = el("tr", null, cls);
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  const hex4 = (sw) => (sw === null || sw === undefined) ? "" : sw.toString(16).toUpperCase().padStart(4, "0");
  const time = (ts) => (ts || "").replace("T", " ").replace(/\.\d+Z$/, "Z");

  function signedOut() { window.location.assign("/signin"); }

  async function api(path, options) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (r.status === 401) { signedOut(); throw new Error("signed out"); }
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) throw new Error(body && body.error ? body.error : ("HTTP " + r.status));
    return body;
  }

  // ---- live sessions: from the stats snapshot, and from events between snapshots ----
  const live = new Map();      // session_id -> {card, state, peer, tls, cipher, requests, since, ended}
  const sessionCard = new Map(); // session_id -> card
  function renderSessions() {
    const body = $("sessions").tBodies[0];
    clear(body);
    const now = Date.now();
    for (const [id, s] of live) {
      if (s.ended && now - s.ended > 30000) { live.delete(id); continue; }
      const tr = row([s.card, s.state + (s.reason ? " (" + s.reason + ")" : ""), s.peer, s.tls, s.cipher, s.requests, time(s.since)], "state-" + s.state.toLowerCase());
      tr.dataset.card = s.card;
      tr.dataset.session = id;
      body.appendChild(tr);
    }
  }
  function onStats(st) {
    $("stat-connected").textContent = st.sessions.connected;
    $("stat-active").textContent = st.sessions.active;
    $("stat-pending").textContent = st.queue.pending;
    $("stat-in-flight").textContent = st.queue.in_flight;
    $("stat-cards").textContent = st.cards;
    const seen = new Set();
    for (const l of st.live) {
      seen.add(l.session_id);
      sessionCard.set(l.session_id, l.psk_identity);
      live.set(l.session_id, { card: l.psk_identity, state: l.state, peer: l.peer, tls: l.tls_version, cipher: l.cipher_suite, requests: l.requests, since: l.started });
    }
    for (const [id, s] of live) if (!seen.has(id) && !s.ended) { s.state = "CLOSED"; s.ended = Date.now(); }
    renderSessions();
  }

  // ---- events ----
  let ended = 0;
  function describe(e) {
    const skip = new Set(["event", "timestamp", "partial_state"]);
    const parts = [];
    for (const [k, v] of Object.entries(e)) {
      if (skip.has(k) || v === null || v === undefined) continue;
      parts.push(k + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v)));
    }
    return parts.join(" ");
  }
  function onEvent(e) {
    const li = el("li", null, "ev ev-" + e.event);
    li.appendChild(el("span", time(e.timestamp), "ts"));
    li.appendChild(el("b", e.event));
    li.appendChild(el("span", describe(e), "fields"));
    const list = $("event-list");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);

    switch (e.event) {
      case "tls_handshake_complete":
        sessionCard.set(e.session_id, e.psk_identity);
        live.set(e.session_id, { card: e.psk_identity, state: "CONNECTED", peer: e.client_addr, tls: e.tls_version, cipher: e.cipher_suite, requests: 0, since: e.timestamp });
        renderSessions();
        break;
      case "session_active": {
        const s = live.get(e.session_id);
        if (s) { s.state = "ACTIVE"; renderSessions(); }
        break;
      }
      case "session_ended": {
        const s = live.get(e.session_id) || { card: e.psk_identity, peer: "", tls: "", cipher: "", requests: 0, since: "" };
        s.state = "CLOSED"; s.reason = e.close_reason; s.ended = Date.now(); s.requests = s.requests || "";
        live.set(e.session_id, s);
        ended += 1;
        $("stat-sessions-ended").textContent = ended;
        renderSessions();
        refreshCardsSoon();
        break;
      }
      case "apdu_sent":
        addResult([time(e.timestamp), sessionCard.get(e.session_id) || "", e.script_id, "", e.command_hex, e.response_hex, e.sw, e.timing_ms === null ? "" : e.timing_ms.toFixed(1) + " ms"], "apdu");
        break;
      case "script_completed":
        completed.set(e.card, Math.max(completed.get(e.card) || 0, e.script_id));
        addResult([time(e.timestamp), e.card, e.script_id, e.status + (e.error ? " (" + e.error + ")" : ""), "", "", "", e.round_trip_ms === null ? "" : e.round_trip_ms.toFixed(1) + " ms"], "script status-" + e.status);
        refreshCardsSoon();
        if (historyCard === e.card) loadHistory(e.card);
        break;
      case "script_outcome_unknown":
        addResult([time(e.timestamp), e.card, e.script_id, "outcome unknown", "", "", "", ""], "script status-unknown");
        break;
    }
  }
  function addResult(cells, cls) {
    const body = $("results-table").tBodies[0];
    const tr = row(cells, cls);
    tr.dataset.card = cells[1];
    tr.dataset.script = cells[2];
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > 200) body.removeChild(body.lastChild);
  }

  // ---- alarms ----
  const alarms = new Map();
  function onAlarm(a) {
    if (a.state === "raised") alarms.set(a.alarm, a); else alarms.delete(a.alarm);
    const box = $("alarms");
    clear(box);
    for (const x of alarms.values()) {
      const d = el("div", null, "alarm alarm-" + x.alarm);
      d.appendChild(el("b", x.alarm.replace(/_/g, " ")));
      d.appendChild(el("span", " " + x.message));
      box.appendChild(d);
    }
  }

  // ---- cards and a card's history ----
  let historyCard = null;
  // The newest script per card whose completion the stream announced: the store may commit it
  // a moment after the event (reads answer before their commit), so the history asks again.
  const completed = new Map();
  let cardsTimer = null;
  function refreshCardsSoon() {
    if (cardsTimer) return;
    cardsTimer = setTimeout(() => { cardsTimer = null; loadCards(); }, 1000);
  }
  async function loadCards() {
    const q = $("card-search").value;
    let cards;
    try { cards = await api("/api/cards?q=" + encodeURIComponent(q)); } catch (_) { return; }
    const body = $("card-table").tBodies[0];
    clear(body);
    for (const c of cards) {
      const link = el("button", c.identity, "card-link");
      link.type = "button";
      link.addEventListener("click", () => loadHistory(c.identity));
      const tr = row([link, c.pending_scripts, time(c.last_session), (c.last_state || "") + (c.last_close_reason ? " (" + c.last_close_reason + ")" : "")]);
      tr.dataset.card = c.identity;
      body.appendChild(tr);
    }
  }
  async function loadHistory(card, retries) {
    retries = retries === undefined ? 5 : retries;
    historyCard = card;
    $("history-card").textContent = card;
    const box = $("history-body");
    let h;
    try { h = await api("/api/cards/" + encodeURIComponent(card) + "/history"); } catch (err) {
      clear(box); box.appendChild(el("p", String(err.message), "error")); return;
    }
    clear(box);
    const announced = completed.get(card) || 0;
    const behind = h.scripts.some((s) => s.id <= announced && (s.state === "pending" || s.state === "in_flight"));
    if (behind && retries > 0) setTimeout(() => { if (historyCard === card) loadHistory(card, retries - 1); }, 500);
    if (h.scripts.length === 0) box.appendChild(el("p", "No scripts for this card.", "note"));
    for (const s of h.scripts) {
      const div = el("div", null, "script");
      const title = "script " + s.id + (s.label ? " — " + s.label : "") + ": " + s.state +
        (s.script_status ? ", " + s.script_status : "") +
        (s.round_trip_us !== null ? ", round trip " + (s.round_trip_us / 1000).toFixed(1) + " ms" : "") +
        ", queued " + time(s.queued) + (s.completed ? ", completed " + time(s.completed) : "");
      div.appendChild(el("h3", title));
      const t = el("table", null, "apdus");
      t.appendChild(row(["C-APDU", "R-APDU", "SW"], "head"));
      if (s.exchanges.length > 0) {
        for (const x of s.exchanges) t.appendChild(row([x.command, x.response === null ? "(not run)" : x.response, hex4(x.sw)]));
      } else {
        for (const c of s.commands) t.appendChild(row([c, "", ""]));
      }
      div.appendChild(t);
      box.appendChild(div);
    }
    if (h.sessions.length > 0) {
      box.appendChild(el("h3", "Sessions"));
      const t = el("table", null, "sessions");
      t.appendChild(row(["started", "state", "reason", "peer", "TLS", "scripts", "APDUs"], "head"));
      for (const s of h.sessions) t.appendChild(row([time(s.started), s.state, s.close_reason, s.peer, s.tls_version, s.scripts, s.apdus]));
      box.appendChild(t);
    }
  }
  let searchTimer = null;
  $("card-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadCards, 250);
  });

  // ---- push ----
  if (canPush) {
    $("push-template").addEventListener("change", (ev) => {
      const o = ev.target.selectedOptions[0];
      if (!o || o.value === "") return;
      const yaml = $("format-yaml").checked;
      $("push-script").value = yaml ? o.dataset.yaml : o.dataset.hex;
    });
    async function push(dryRun) {
      const out = $("push-result");
      clear(out);
      out.className = "pending";
      out.textContent = dryRun ? "checking…" : "queueing…";
      const req = {
        cards: $("push-cards").value,
        format: $("format-yaml").checked ? "yaml" : "hex",
        script: $("push-script").value,
        label: $("push-label").value || null,
        dry_run: dryRun,
      };
      try {
        const r = await api("/api/push", {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify(req),
        });
        clear(out);
        out.className = "ok";
        const p = r.preview;
        out.appendChild(el("p", (dryRun ? "OK: would queue " : "Queued ") + p.commands.length + " command(s) for " + p.cards.length + " card(s), redelivery " + p.redelivery + "."));
        const ul = el("ul");
        for (const q of (r.queued || [])) ul.appendChild(el("li", "script " + q.script + " for " + q.card, "queued"));
        if (dryRun) for (const c of p.commands) ul.appendChild(el("li", c, "command"));
        out.appendChild(ul);
        if (!dryRun) refreshCardsSoon();
      } catch (err) {
        clear(out);
        out.className = "error";
        out.textContent = String(err.message);
      }
    }
    $("push-check").addEventListener("click", () => push(true));
    $("push-form").addEventListener("submit", (ev) => { ev.preventDefault(); push(false); });
  }

  // ---- the stream ----
  function connect() {
    const es = new EventSource("/api/stream");
    es.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "conn live"; });
    es.addEventListener("ota", (m) => onEvent(JSON.parse(m.data)));
    es.addEventListener("stats", (m) => onStats(JSON.parse(m.data)));
    es.addEventListener("alarm", (m) => onAlarm(JSON.parse(m.data)));
    es.addEventListener("lagged", (m) => {
      const d = JSON.parse(m.data);
      onEvent({ event: "events_lost", timestamp: new Date().toISOString(), count: d.lost });
    });
    es.addEventListener("signout", () => { es.close(); signedOut(); });
    es.addEventListener("error", () => {
      $("conn").textContent = "reconnecting…"; $("conn").className = "conn down";
      if (es.readyState === EventSource.CLOSED) {
        // Closed for good (e.g. 401): find out whether we are still signed in.
        fetch("/api/whoami", { credentials: "same-origin" }).then((r) => {
          if (r.status === 401) signedOut(); else setTimeout(connect, 2000);
        }, () => setTimeout(connect, 5000));
      }
    });
  }
  setInterval(renderSessions, 5000);
  loadCards();
  connect();
})();
