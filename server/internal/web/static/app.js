// Rein web view: a session list and a session transcript, both live.
//
// Everything comes from the rein-server API on this origin. With
// authentication on, the page asks once for the client token (kept in
// sessionStorage, so it is gone when the tab closes), sends it as a Bearer
// header on fetch, and opens streams with stream tickets, since
// EventSource cannot send headers. Text from the server is put into the
// page as text nodes; the one exception is agent text rendered as
// Markdown, which goes through marked and DOMPurify (see markdown below)
// and is appended as sanitised DOM nodes, never assigned as HTML.
"use strict";

const TOKEN_KEY = "rein.token";

// ---- small DOM helpers ----------------------------------------------------

// h builds an element: h("div.a.b", {title: "x", onclick: fn}, child, ...).
// Children are nodes or strings (added as text); null and false are skipped.
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function pill(status, text) {
  return h("span.pill", { dataset: { status: status || "unknown" } }, text ?? status ?? "unknown");
}

function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function fmtDuration(ms) {
  if (!(ms >= 0)) return "";
  if (ms < 1000) return `${ms} ms`;
  // Rounded once, to whole seconds from a minute on (and to tenths below
  // it, where 59.95 s would read "60.0 s"), so no part reads 60.
  if (ms < 59950) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

const num = new Intl.NumberFormat();

function fmtUsage(u) {
  if (!u || typeof u !== "object") return "";
  const parts = [];
  if (u.inputTokens != null) parts.push(`${num.format(u.inputTokens)} in`);
  if (u.outputTokens != null) parts.push(`${num.format(u.outputTokens)} out`);
  if (u.cachedInputTokens) parts.push(`${num.format(u.cachedInputTokens)} cached`);
  if (u.contextUsed != null && u.contextSize) parts.push(`context ${Math.round((100 * u.contextUsed) / u.contextSize)}%`);
  if (u.costUsd != null) parts.push(`$${Number(u.costUsd).toFixed(4)}`);
  return parts.join(" · ");
}

function json(v) {
  try {
    return JSON.stringify(v, null, 2);
  } catch {
    return String(v);
  }
}

// ---- Markdown -----------------------------------------------------------------

// markdown renders agent text. marked turns Markdown into HTML and
// DOMPurify (both vendored in /ui/vendor; internal/web/doc.go says how to
// upgrade them) cleans it into a DocumentFragment that is appended, so no
// HTML string ever reaches the page. Raw HTML in the source is not passed
// through: marked's html tokens are escaped, so "<img onerror=…>" shows as
// that text. DOMPurify is the second wall: only the tags Markdown makes
// survive, no attribute but href, title and a list's start, and links
// only with http, https or mailto URLs; they open in a new tab with
// rel="noopener noreferrer". Images become links: loading one would tell
// a third party who reads the transcript (and the CSP blocks it anyway).
// Should the vendored files fail to load, text is shown as plain text.
const markdown = (() => {
  const text = (src) => document.createTextNode(src || "");
  if (typeof window.marked?.Marked !== "function" || typeof window.DOMPurify !== "function") return { block: text, inline: text, ok: false };
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
  const md = new window.marked.Marked({ gfm: true, breaks: false, async: false });
  md.use({
    renderer: {
      html: ({ text }) => esc(text),
      image: ({ href, text }) => `<a href="${esc(href)}">${esc(text || href)}</a>`,
    },
  });
  const purify = window.DOMPurify(window); // an instance of our own: its hook stays ours
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  const config = {
    ALLOWED_TAGS: ["p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li", "pre", "code", "em", "strong", "del", "a", "table", "thead", "tbody", "tr", "th", "td"],
    ALLOWED_ATTR: ["href", "title", "start"],
    ADD_URI_SAFE_ATTR: ["start"],
    ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
    RETURN_DOM_FRAGMENT: true,
  };
  const clean = (html) => purify.sanitize(html.trim(), config);
  return {
    block: (src) => clean(md.parse(src || "")),
    inline: (src) => clean(md.parseInline(src || "")),
    ok: true,
  };
})();

// mdField is an element showing Markdown source from the artifact field
// name; setMarkdown re-renders it.
function mdField(spec, name, value, inline) {
  const el = h(spec, { dataset: { md: name, mdInline: inline ? "1" : "" } });
  setMarkdown(el, value);
  return el;
}

function setMarkdown(el, value) {
  el.replaceChildren(el.dataset.mdInline ? markdown.inline(value) : markdown.block(value));
}

// shellQuote quotes s for a POSIX shell, like the rein CLI does.
function shellQuote(s) {
  return s && /^[A-Za-z0-9._\-:/=@+]+$/.test(s) ? s : `'${String(s).replace(/'/g, "'\\''")}'`;
}

// copyText copies text to the clipboard, or, where the browser refuses
// (plain http on another host is not a secure context), selects the
// element showing it so the user can press Ctrl+C. btn says which.
async function copyText(text, el, btn) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    ok = false;
  }
  if (!ok) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  btn.textContent = ok ? "Copied" : "Selected: press Ctrl+C";
  btn.dataset.copied = ok ? "yes" : "selected";
}

// ---- API ------------------------------------------------------------------

class APIError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set token(v) {
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("forget").hidden = !v;
  },
};

// api calls the server; a non-2xx answer throws an APIError carrying the
// server's {code, message}. A 401 also sends the user to the token form.
async function api(method, path, body, extraHeaders) {
  const headers = { ...extraHeaders };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (err) {
    throw new APIError(0, "network", `cannot reach the server (${err.message})`);
  }
  // The body can fail after the status came (the link failed a moment
  // later). A success whose body broke off is a lost answer as much as a
  // failed fetch: a command whose 202 broke off is sent again with its
  // key, not reported failed. A refusal is one without its body too.
  let text = "";
  try {
    text = await res.text();
  } catch (err) {
    if (res.ok) throw new APIError(0, "network", `the server's answer broke off (${err.message})`);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new APIError(res.status, data?.code, data?.message);
    if (res.status === 401) needToken(auth.token ? "The server did not accept that token." : "");
    // A 403 to this page's own requests is about its credential, not one
    // action: a sandbox token given as the client token, or a name for
    // the server that is not this machine while it has no token. Every
    // request is refused alike, so the form comes back, saying why in the
    // server's words (not "Cannot reach rein-server", nor a stream that
    // stops at "reconnecting…").
    else if (res.status === 403) needToken(`The server refused this page: ${err.message}`);
    throw err;
  }
  return data;
}

// sendCommand posts a command to session id with an Idempotency-Key made
// for it, and when the answer is lost (the network failed after the
// request may have arrived) or the server is unavailable (502-504), sends
// it again with the same key a few times over a few seconds: the server
// stores it once, so a prompt never runs twice. (This page comes from the
// server it talks to, which always honours the key.) onRetry(err, ms)
// hears of each resend. key, when given, is the key of an earlier send of
// the same command whose fate is unknown (see unsure).
const commandWaits = [250, 500, 1000, 2000];
async function sendCommand(id, cmd, onRetry, key = newIdempotencyKey()) {
  for (let i = 0; ; i++) {
    try {
      return await api("POST", `${sessionPath(id)}/commands`, cmd, { "Idempotency-Key": key });
    } catch (err) {
      if (!unknownFate(err) || i >= commandWaits.length) throw err;
      onRetry?.(err, commandWaits[i]);
      await new Promise((resolve) => setTimeout(resolve, commandWaits[i]));
    }
  }
}

// unknownFate says a command send failed in a way that leaves it unknown
// whether the server stored it: the answer was lost (the network failed
// after the request may have arrived), or a proxy in front of the server
// said it was unavailable (502-504).
function unknownFate(err) {
  return !!err && (err.status === 0 || err.status === 502 || err.status === 503 || err.status === 504);
}

// newIdempotencyKey is 32 random hex digits (crypto.getRandomValues works
// on plain http too, where crypto.randomUUID does not).
function newIdempotencyKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function sessionPath(id) {
  return `/sessions/${encodeURIComponent(id)}`;
}

// ---- streams --------------------------------------------------------------

// Stream follows one SSE route. The browser's EventSource reconnects by
// itself after a network error, sending Last-Event-ID, and the server
// resumes exactly from it; the ticket in the URL stays valid for that for
// its minute. When EventSource gives up instead (an HTTP error such as 401
// for an expired ticket, a server restart, which voids every ticket, or
// 404 for a session deleted), Stream gets a fresh ticket, which says
// whether the session is gone, and opens a new EventSource. That one cannot
// send Last-Event-ID (the server takes it only as a header), so it starts
// with a full snapshot, which the handlers apply as replacing what they hold.
// onOpen runs as each connection opens, before its first event: a handler
// that must know what one connection's replay sent starts counting there.
class Stream {
  constructor({ path, ticketPath, query, handlers, onState, onGone, onOpen }) {
    Object.assign(this, { path, ticketPath, query: query || {}, handlers, onState, onGone, onOpen });
    this.es = null;
    this.timer = 0;
    this.failures = 0;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
  }

  state(s) {
    if (!this.stopped && this.onState) this.onState(s);
  }

  async open() {
    if (this.stopped) return;
    this.state(this.failures ? "reconnecting" : "connecting");
    const params = new URLSearchParams(this.query);
    // A ticket is asked for with authentication off too, where the stream
    // needs none: EventSource hides why it failed, and the ticket's 404 is
    // how the page learns that the session is gone instead of retrying.
    try {
      const t = await api("POST", this.ticketPath);
      params.set("ticket", t.ticket);
    } catch (err) {
      if (this.stopped) return;
      if (err.status === 404) {
        this.state("gone");
        if (this.onGone) this.onGone(err);
        return;
      }
      if (err.status === 401 || err.status === 403) return; // the token form is up (api)
      this.retry();
      return;
    }
    if (this.stopped) return;
    const q = params.toString();
    const es = new EventSource(q ? `${this.path}?${q}` : this.path);
    this.es = es;
    // complete: this connection's replay reached its snapshot_complete
    // (every stream sends one after each connection's replay).
    // The backoff starts over only then: a link that cuts every replay
    // (a proxy's size limit) must not make the page open stream after
    // stream at once.
    let complete = false;
    es.addEventListener("snapshot_complete", () => {
      complete = true;
      this.failures = 0;
    });
    for (const [name, fn] of Object.entries(this.handlers)) {
      es.addEventListener(name, (e) => {
        if (this.es !== es) return;
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        fn(data, e.lastEventId);
      });
    }
    es.onopen = () => {
      if (this.es !== es) return;
      complete = false;
      if (this.onOpen) this.onOpen();
      this.state("live");
    };
    es.onerror = () => {
      if (this.es !== es) return;
      // A replay cut before its snapshot_complete is not resumed:
      // EventSource would reconnect with the id of the last snapshot it
      // got, and a replay that was full (every new EventSource's, or one
      // after the history went back) would go on as a partial one, whose
      // end drops nothing of what the page held that the session no
      // longer has. A new EventSource replays it all again.
      // (A connection that never opened has no replay either: it is
      // tried again the same way.)
      if (es.readyState === EventSource.CLOSED || !complete) {
        es.close();
        this.es = null;
        this.retry();
      } else {
        this.state("reconnecting"); // EventSource retries with Last-Event-ID
      }
    };
  }

  retry() {
    if (this.stopped) return;
    // The first retry is immediate: an expired ticket is routine.
    const delay = this.failures === 0 ? 0 : Math.min(500 * 2 ** this.failures, 10000) * (0.5 + Math.random() / 2);
    this.failures++;
    this.state("reconnecting");
    this.timer = setTimeout(() => this.open(), delay);
  }
}

// Replay follows one connection's replay of an artifact stream. A replay
// that held every artifact ends with snapshot_complete {full: true}: what
// the page holds that it did not send is no longer the session's (its
// history went back: a restore from an older backup, the session deleted
// and created again), and end hands each such seq to drop. The session
// list uses it too, by session id: its every replay is full.
class Replay {
  start() {
    this.seen = new Set();
  }

  saw(seq) {
    if (this.seen) this.seen.add(seq);
  }

  end({ full }, held, drop) {
    if (full && this.seen) for (const seq of held) if (!this.seen.has(seq)) drop(seq);
    this.seen = null;
  }
}

function setConn(state) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.textContent = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", gone: "gone", idle: "" }[state] ?? state;
}

// ---- session list (shared by both pages) ----------------------------------

const sessions = {
  map: new Map(),
  ready: false,
  state: "connecting",
  stream: null,
  listeners: new Set(),

  start() {
    if (this.stream) return;
    // The session stream has no ids: every connection, a reconnect after
    // a network error too, starts with the full list, and a session
    // removed while the page was away is simply not in it.
    const replay = new Replay();
    this.stream = new Stream({
      path: "/sessions/stream",
      ticketPath: "/sessions/stream-ticket",
      onOpen: () => replay.start(),
      onState: (s) => {
        this.state = s;
        if (!route.id) setConn(s);
      },
      handlers: {
        // A snapshot's records are told to the listeners once, at its
        // end: each of them redraws or scans the whole list, so telling
        // them per record cost n² for n sessions (55 s for 1,000).
        session_snapshot: ({ session }) => {
          replay.saw(session.id);
          this.map.set(session.id, session);
        },
        session_created: ({ session }) => this.put(session),
        session_updated: ({ id, fields }) => {
          const s = this.map.get(id);
          if (!s) return;
          Object.assign(s, fields);
          this.changed(id);
        },
        session_removed: ({ id }) => {
          this.map.delete(id);
          this.changed(id);
        },
        snapshot_complete: () => {
          replay.end({ full: true }, [...this.map.keys()], (id) => this.map.delete(id));
          this.ready = true;
          this.changed(null);
        },
      },
    }).start();
  },

  stop() {
    if (this.stream) this.stream.stop();
    this.stream = null;
    this.map.clear();
    this.ready = false;
    needs.stop();
    inbox.stop();
  },

  put(s) {
    this.map.set(s.id, s);
    this.changed(s.id);
  },

  changed(id) {
    for (const fn of this.listeners) fn(id);
  },

  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
};

// ---- "needs you" ---------------------------------------------------------------

// needs knows how many permission requests wait for the user in each
// session. A session record carrying pendingApprovals (a server that
// counts them) is taken at its word. Otherwise the page derives the count
// from artifact streams it can already open: the open session's own page
// feeds it, and every other live session gets a background stream that
// only looks at permission artifacts. Only live sessions are watched: a
// request waits within a running turn, and the reducer cancels it when the
// turn ends, so an idle, bootstrapping or disconnected session waits for
// nothing. A browser opens at most six connections to one server, and the
// session stream and the open session hold two, so at most WATCH_MAX
// background streams run; further live sessions are polled
// (GET /sessions/:id/artifacts, one at a time, every POLL_MS) instead.
// A session is live for each turn, so a watcher whose session stops being
// live lingers for LINGER_MS before it closes: the next turn then costs no
// new snapshot. A lingering watcher gives its place up to a session that
// is live now.
const WATCH_MAX = 3;
const POLL_MS = 4000;
const LINGER_MS = 30000;

const needs = {
  perms: new Map(), // session id -> Map(seq -> pending?)
  watchers: new Map(), // session id -> {stream, linger: timer or 0}
  open: null, // the session whose page is shown: that page feeds perms
  unwatched: [],
  polling: 0, // generation of the poll loop running, 0 when none
  listeners: new Set(),

  // count is how many permission requests session s waits on.
  count(s) {
    if (typeof s.pendingApprovals === "number") return s.pendingApprovals;
    if (s.status !== "live") return 0;
    let n = 0;
    for (const pending of this.perms.get(s.id)?.values() ?? []) if (pending) n++;
    return n;
  },

  // track takes one whole artifact (snapshot or created) of session id.
  track(id, a) {
    if (a?.type !== "permission") return;
    if (!this.perms.has(id)) this.perms.set(id, new Map());
    this.perms.get(id).set(a.seq, a.status === "pending");
    this.changed();
  },

  // forget drops permission seq of session id: a full replay did not
  // send it (the session's history went back).
  forget(id, seq) {
    if (this.perms.get(id)?.delete(seq)) this.changed();
  },

  // update takes an artifact_updated of session id.
  update(id, u) {
    const m = this.perms.get(id);
    if (u.field !== "status" || !m?.has(u.seq)) return;
    m.set(u.seq, u.set === "pending");
    this.changed();
  },

  // sync starts and stops the background watchers to match the session
  // list; called whenever it or the open page changes.
  sync() {
    const want = [];
    for (const s of sessions.map.values()) {
      if (s.status === "live" && typeof s.pendingApprovals !== "number" && s.id !== this.open) want.push(s.id);
    }
    for (const [id, w] of this.watchers) {
      if (want.includes(id)) {
        clearTimeout(w.linger);
        w.linger = 0;
      } else if (id === this.open || !sessions.map.has(id)) {
        this.unwatch(id); // the page follows it, or it is gone
      } else if (!w.linger) {
        w.linger = setTimeout(() => this.unwatch(id), LINGER_MS);
      }
    }
    let dropped = false;
    for (const id of this.perms.keys()) {
      if (id !== this.open && !this.watchers.has(id) && !want.includes(id)) {
        this.perms.delete(id);
        dropped = true;
      }
    }
    for (const id of want) {
      if (this.watchers.has(id)) continue;
      if (this.watchers.size >= WATCH_MAX) {
        const idle = [...this.watchers].find(([, w]) => w.linger);
        if (idle) this.unwatch(idle[0]);
      }
      if (this.watchers.size < WATCH_MAX) this.watchers.set(id, { stream: this.watch(id), linger: 0 });
    }
    this.unwatched = want.filter((id) => !this.watchers.has(id));
    if (this.unwatched.length && !this.polling) this.poll();
    if (dropped) this.changed();
  },

  watch(id) {
    const replay = new Replay();
    return new Stream({
      path: `${sessionPath(id)}/stream`,
      ticketPath: `${sessionPath(id)}/stream-ticket`,
      onOpen: () => replay.start(),
      handlers: {
        artifact_snapshot: ({ artifact }) => {
          replay.saw(artifact.seq);
          this.track(id, artifact);
        },
        artifact_created: ({ artifact }) => this.track(id, artifact),
        artifact_updated: (u) => this.update(id, u),
        snapshot_complete: (c) => replay.end(c, [...(this.perms.get(id)?.keys() ?? [])], (seq) => this.forget(id, seq)),
      },
    }).start();
  },

  unwatch(id) {
    const w = this.watchers.get(id);
    if (!w) return;
    clearTimeout(w.linger);
    w.stream.stop();
    this.watchers.delete(id);
    if (id !== this.open && this.perms.delete(id)) this.changed();
  },

  async poll() {
    const gen = (this.polling = Date.now());
    while (this.polling === gen && this.unwatched.length) {
      for (const id of [...this.unwatched]) {
        let arts;
        try {
          arts = await api("GET", `${sessionPath(id)}/artifacts`);
        } catch {
          continue; // removed, or the token form is up: sync decides
        }
        if (this.polling !== gen || !this.unwatched.includes(id)) continue;
        const m = new Map();
        for (const a of arts) if (a.type === "permission") m.set(a.seq, a.status === "pending");
        this.perms.set(id, m);
        this.changed();
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (this.polling === gen) this.polling = 0;
  },

  stop() {
    for (const w of this.watchers.values()) {
      clearTimeout(w.linger);
      w.stream.stop();
    }
    this.watchers.clear();
    this.perms.clear();
    this.unwatched = [];
    this.polling = 0;
  },

  changed() {
    for (const fn of this.listeners) fn();
  },

  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
};
sessions.listen(() => needs.sync());

// waiting is the total of requests waiting and how many sessions hold them.
function waiting() {
  let total = 0;
  let count = 0;
  for (const s of sessions.map.values()) {
    const n = needs.count(s);
    total += n;
    if (n) count++;
  }
  return { total, sessions: count };
}

function drawTitle() {
  const { total } = waiting();
  document.title = total ? `(${total}) Rein` : "Rein";
}
needs.listen(drawTitle);
sessions.listen(drawTitle);

// ---- approvals inbox ----------------------------------------------------------

// inbox follows GET /approvals/stream: every pending permission request of
// every session, so a request is seen even in a session nobody has open.
// A request answered (from any client) but not yet taken by its agent
// stays listed, carrying its answer (approval_answered).
// The stream takes a session stream ticket. A connection starts with a
// full snapshot (approval_snapshot events, then snapshot_complete with
// full: true, which replaces the list) or, when EventSource resumes with
// Last-Event-ID, with exactly the changes missed (full: false).
const inbox = {
  pending: new Map(), // "session/request" -> approval
  fresh: new Map(),
  ready: false,
  stream: null,
  listeners: new Set(),

  start() {
    if (this.stream || (discovery && discovery.features && discovery.features.approvalsInbox === false)) return;
    const key = (a) => `${a.sessionId}/${a.requestId}`;
    this.stream = new Stream({
      path: "/approvals/stream",
      ticketPath: "/sessions/stream-ticket",
      onState: (st) => {
        if (st !== "live") this.fresh = new Map();
      },
      handlers: {
        approval_snapshot: ({ approval }) => this.fresh.set(key(approval), approval),
        approval_added: ({ approval }) => {
          this.pending.set(key(approval), approval);
          this.changed();
        },
        approval_answered: ({ approval }) => {
          this.pending.set(key(approval), approval);
          this.changed();
        },
        approval_resolved: (r) => {
          this.pending.delete(`${r.sessionId}/${r.requestId}`);
          this.changed();
        },
        snapshot_complete: ({ full }) => {
          if (full) this.pending = this.fresh;
          this.fresh = new Map();
          this.ready = true;
          this.changed();
        },
      },
    }).start();
  },

  stop() {
    if (this.stream) this.stream.stop();
    this.stream = null;
    this.pending = new Map();
    this.fresh = new Map();
    this.ready = false;
  },

  list() {
    return [...this.pending.values()].sort((a, b) => a.requestedAt - b.requestedAt || (a.sessionId < b.sessionId ? -1 : 1));
  },

  changed() {
    for (const fn of this.listeners) fn();
  },

  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
};

// inboxCard shows the "needs you" list: each pending request with its
// session, tool, how long it has waited and a button per option; the
// one-time options (allow_once, reject_once) come first. A request
// answered already, here or from any other client, shows its answer
// instead of buttons until its agent takes it (the server no longer counts
// it in pendingApprovals, so it needs no one).
function inboxCard() {
  const rows = h("ul.inbox-list", { id: "inbox-list" });
  const err = h("p.form-error", { id: "inbox-error", role: "alert" });
  const card = h("div.card.inbox-card", { id: "inbox", hidden: true }, h("h2", {}, "Needs you"), rows, err);
  const rank = { allow_once: 0, reject_once: 1, allow_always: 2, reject_always: 3 };
  // done holds, by "session/request@seq", what replaces a request's
  // buttons once they can do nothing more: the answer this page sent, or
  // why the server refused one (answered already). The request stays
  // listed until its agent resolves it; the list is drawn again every few
  // seconds, so this is kept here, not in the buttons. The seq keeps it
  // off a later request its agent asks under the same id.
  const done = new Map();
  const doneKey = (a) => `${a.sessionId}/${a.requestId}@${a.seq ?? ""}`;
  const draw = () => {
    const list = inbox.list();
    card.hidden = list.length === 0;
    const listed = new Set(list.map(doneKey));
    for (const k of done.keys()) if (!listed.has(k)) done.delete(k);
    rows.replaceChildren(
      ...list.map((a) => {
        const k = `${a.sessionId}/${a.requestId}`;
        const dk = doneKey(a);
        const opts = [...(a.options || [])].sort((x, y) => (rank[x.kind] ?? 9) - (rank[y.kind] ?? 9));
        const tool = a.tool ? a.tool.name || a.tool.title || a.tool.id : "";
        return h(
          "li.inbox-item",
          { dataset: { session: a.sessionId, request: a.requestId, seq: a.seq ?? "" } },
          h(
            "div.inbox-what",
            {},
            h("a.inbox-session", { href: `#/s/${encodeURIComponent(a.sessionId)}` }, a.sessionId),
            a.project ? h("span.muted", {}, ` · ${a.project}`) : null,
            h("span.inbox-title", {}, a.title || a.requestId),
            tool ? h("code.inbox-tool", {}, tool) : null,
            h("span.muted.inbox-wait", { title: fmtTime(a.requestedAt) }, `waiting ${fmtDuration(Math.max(Date.now() - a.requestedAt, 0))}`),
          ),
          note(a, dk) !== null ? h("span.muted.inbox-done", { role: "status" }, note(a, dk)) : buttons(a, k, dk, opts),
        );
      }),
    );
  };
  // note is what replaces a request's buttons (null for none): its
  // answer, what this card sent or was told, or the server's refusal of
  // an answer sent while the card was not shown.
  const note = (a, dk) => {
    if (a.answer) return answeredText(a);
    if (done.has(dk)) return done.get(dk);
    const st = answering.get(answerKey(a.sessionId, a.requestId, a.seq));
    return st?.state === "refused" ? st.message : null;
  };
  // buttons are a request's, one per option; while an answer to it is on
  // its way (answering: from here or the session page) they stay disabled
  // and say so.
  const buttons = (a, k, dk, opts) => {
    const sending = answering.get(answerKey(a.sessionId, a.requestId, a.seq));
    return h(
      "div.inbox-buttons",
      {},
      ...opts.map((o) =>
        h(
          (String(o.kind).startsWith("allow") ? "button.approve.small" : "button.deny.small") + (sending?.choice === o.id ? ".busy" : ""),
          {
            type: "button",
            disabled: !!sending,
            dataset: { option: o.id, kind: o.kind },
            onclick: async () => {
              // One answer per request: the server takes the first only.
              if (answering.get(answerKey(a.sessionId, a.requestId, a.seq))?.state === "sending") return;
              try {
                const res = await sendAnswer(a.sessionId, a.requestId, a.seq, o.id, { optionId: o.id }, (cmd) =>
                  sendCommand(a.sessionId, cmd, (e3, ms) => {
                    err.textContent = `${k}: ${e3.message}; sending the answer again in ${ms} ms`;
                  }),
                );
                err.textContent = "";
                done.set(dk, `${o.name || o.id} sent (command ${res?.id}); waiting for the agent`);
                draw();
              } catch (e2) {
                err.textContent = `${k}: ${e2.message}${e2.code ? ` (${e2.code})` : ""}`;
                if (e2.code === "not_found") {
                  // The server has no such request: the list
                  // was wrong about it.
                  inbox.pending.delete(k);
                  inbox.changed();
                } else if (answerGone(e2)) {
                  done.set(dk, e2.message);
                  draw();
                }
              }
            },
          },
          o.name || o.id,
        ),
      ),
      sending?.state === "sending" ? h("span.muted.inbox-sending", { role: "status" }, "sending…") : null,
    );
  };
  draw();
  const stop = inbox.listen(draw);
  const tick = setInterval(draw, 5000); // the waiting times
  return { card, stop: () => (stop(), clearInterval(tick)) };
}

// answering holds, by answerKey, the permission answers this page is
// sending or sent: { choice, state }, choice the option id ("" for a
// dismissal), state "sending" until the server answered, then "sent", or
// "refused" with the server's message when it refused the answer for
// good. Every view that draws a request's buttons (the Needs-you card, the
// session page) draws them from here, not from the buttons it drew last:
// it draws them again at any time (the card's timer, a stream's replay,
// the page built anew after navigating), and buttons drawn enabled while
// the answer is still on its way (sendCommand resends it for seconds)
// would let a second click send a second answer, which the server only
// refuses. Kept for the page's life: the seq, which this server always
// sends, keeps an entry off a later request asked under the same id.
const answering = new Map();

function answerKey(session, request, seq) {
  return `${session}/${request}@${seq ?? ""}`;
}

// sendAnswer sends a permission answer through send (which sends the
// command and returns its result, or throws its error), recording it in
// answering and telling the inbox's listeners as it goes, so every view
// redraws the request.
async function sendAnswer(session, request, seq, choice, body, send) {
  const k = answerKey(session, request, seq);
  answering.set(k, { choice, state: "sending" });
  inbox.changed();
  try {
    // requestSeq: this request, not a later one its agent may ask under
    // the id before the answer arrives (the server refuses it then).
    const res = await send({ type: "permission_response", requestId: request, requestSeq: seq, ...body });
    answering.set(k, { choice, state: "sent" });
    return res;
  } catch (err) {
    if (answerGone(err)) answering.set(k, { choice, state: "refused", message: err.message });
    else answering.delete(k); // it may pass another time: the buttons again
    throw err;
  } finally {
    inbox.changed();
  }
}

// answeredText says what answer a request carries (approval.answer),
// and with byCommand which command sent it.
function answeredText(a, byCommand) {
  const an = a.answer;
  const by = byCommand && an.commandId ? ` (command ${an.commandId})` : "";
  if (an.outcome === "cancelled") return `answered: dismissed${by}, waiting for the agent`;
  const o = (a.options || []).find((x) => x.id === an.optionId);
  return `answered: ${an.optionName || o?.name || an.optionId}${by}, waiting for the agent`;
}

// answerGone says a permission answer was refused for good: the request
// was answered already, no longer waits, or never existed (409 conflict,
// 404 not_found). Another click cannot help; any other failure (no
// sandbox connected, the server unavailable) may pass.
function answerGone(err) {
  return !!err && (err.code === "conflict" || err.code === "not_found");
}

// discovery is the server's /.well-known/rein.json (public), read once at
// boot; the page uses its limits where it has them.
let discovery = null;

async function loadDiscovery() {
  try {
    const res = await fetch("/.well-known/rein.json", { cache: "no-store" });
    if (res.ok) discovery = await res.json();
  } catch {
    discovery = null; // an older server: the page words things generally
  }
}

// ---- routing ----------------------------------------------------------------

const route = { id: null, turns: false, project: "" };
let teardown = () => {};

// sessionIDError says why id cannot be a session id ("" when it can), by
// the server's rule (protocol.ValidateSessionID). The page must not call
// the API with such an id: "." and ".." are path segments that fetch
// resolves away, so #/s/.. would post its prompt to /sessions/commands.
function sessionIDError(id) {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) return "A session id is 1-128 letters, digits, '.', '_' or '-'.";
  if (/^\.+$/.test(id)) return "A session id may not be made only of dots.";
  if (id === "stream" || id === "stream-ticket") return `"${id}" is reserved: it is a route.`;
  return "";
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const t = path.match(/^\/s\/(.+)\/turns$/);
  if (t) {
    let id;
    try {
      id = decodeURIComponent(t[1]);
    } catch {
      id = t[1]; // a malformed escape: sessionIDError refuses it
    }
    return { id, turns: true, project: "" };
  }
  const m = path.match(/^\/s\/(.+)$/);
  let id = null;
  if (m) {
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      id = m[1]; // a malformed escape: sessionIDError refuses it
    }
  }
  return { id, turns: false, project: params.get("project") || "" };
}

// badIDPage is shown instead of a session whose id in the URL is invalid.
function badIDPage(app, id, why) {
  crumbs(h("a", { href: "#/" }, "Sessions"));
  app.append(
    h("section.page", {}, h("div.card.token-card", { id: "bad-id" }, h("h1", {}, "Not a session id"), h("p", { id: "bad-id-reason" }, why), h("p.muted", {}, h("code", {}, id)), h("a", { href: "#/" }, "All sessions"))),
  );
  return () => {};
}

function render() {
  teardown();
  teardown = () => {};
  Object.assign(route, parseHash());
  const app = document.getElementById("app");
  app.replaceChildren();
  const bad = route.id !== null ? sessionIDError(route.id) : "";
  if (bad) teardown = badIDPage(app, route.id, bad);
  else if (route.id && route.turns) teardown = turnsPage(app, route.id);
  else if (route.id) teardown = sessionPage(app, route.id);
  else teardown = listPage(app);
}

function crumbs(...items) {
  document.getElementById("crumbs").replaceChildren(...items.flatMap((it, i) => (i ? [h("span.sep", {}, "/"), it] : [it])));
}

// ---- token form -------------------------------------------------------------

let asking = false;

function needToken(message) {
  if (asking) return;
  asking = true;
  auth.token = "";
  teardown();
  teardown = () => {};
  sessions.stop();
  setConn("idle");
  crumbs();
  const input = h("input", { type: "password", id: "token-input", autocomplete: "off", spellcheck: "false", placeholder: "client token", "aria-label": "client token" });
  const err = h("p.form-error", { id: "token-error", role: "alert" }, message || "");
  const form = h(
    "form.card.token-card",
    {
      id: "token-form",
      onsubmit: (e) => {
        e.preventDefault();
        const v = input.value.trim();
        if (!v) return;
        // rein-server takes only a printable ASCII client token, and a
        // browser sends no character past U+00FF in a header at all:
        // kept, such a token failed every request with "Cannot reach
        // rein-server", and a Latin-1 one got "not accepted".
        if (/[^\x20-\x7e]/.test(v)) {
          err.textContent = "A client token is printable ASCII; this one has other characters. Check what was typed or pasted.";
          return;
        }
        auth.token = v;
        asking = false;
        boot();
      },
    },
    h("h1", {}, "Connect to rein-server"),
    h("p.muted", {}, "This server requires its client token (the value of --api-token or --api-token-file). It stays in this tab only and is sent as a Bearer header."),
    input,
    h("button.primary", { type: "submit", id: "token-submit" }, "Connect"),
    err,
  );
  document.getElementById("app").replaceChildren(form);
  input.focus();
}

// ---- list page --------------------------------------------------------------

function listPage(app) {
  crumbs(h("span", {}, "Sessions"));
  setConn(sessions.state);
  const filter = h("select", { id: "project-filter", "aria-label": "project" });
  filter.addEventListener("change", () => {
    location.hash = filter.value ? `#/?project=${encodeURIComponent(filter.value)}` : "#/";
  });
  const count = h("span.muted", { id: "session-count" });
  const needsSummary = h("span.needs-summary", { id: "needs-summary", hidden: true });
  const tbody = h("tbody", { id: "session-rows" });
  const empty = h("p.empty.muted", { id: "sessions-empty", hidden: true });
  const table = h(
    "table.sessions",
    {},
    h("thead", {}, h("tr", {}, h("th", {}, "Session"), h("th", {}, "Project"), h("th", {}, "Status"), h("th", {}, "Summary"), h("th.num", {}, "Created"))),
    tbody,
  );
  const panel = h("div.panel-slot", { id: "new-session-slot" });
  const inboxView = inboxCard();
  const newButton = h("button.primary", { type: "button", id: "new-session" }, "New session");
  newButton.addEventListener("click", () => {
    panel.replaceChildren(newSessionForm(panel, route.project));
    panel.querySelector("input")?.focus();
  });
  app.append(
    h(
      "section.page.list-page",
      {},
      h("div.toolbar", {}, h("h1", {}, "Sessions"), count, needsSummary, h("span.grow"), h("label.filter", {}, "Project ", filter), newButton),
      panel,
      inboxView.card,
      h("div.card.table-card", {}, table, empty),
    ),
  );

  const draw = () => {
    const all = [...sessions.map.values()];
    const projects = [...new Set(all.map((s) => s.project).filter(Boolean))].sort();
    if (route.project && !projects.includes(route.project)) projects.push(route.project);
    filter.replaceChildren(h("option", { value: "" }, "All projects"), ...projects.map((p) => h("option", { value: p }, p)));
    filter.value = route.project;
    // Sessions that wait for the user come first, then newest first.
    const shown = all
      .filter((s) => !route.project || s.project === route.project)
      .map((s) => ({ s, n: needs.count(s) }))
      .sort((a, b) => (b.n > 0) - (a.n > 0) || b.s.createdAt - a.s.createdAt || (a.s.id < b.s.id ? -1 : 1));
    tbody.replaceChildren(
      ...shown.map(({ s, n }) =>
        h(
          "tr",
          { dataset: { id: s.id, needs: n ? "yes" : "" }, onclick: (e) => e.target.tagName !== "A" && (location.hash = `#/s/${encodeURIComponent(s.id)}`) },
          h("td.id", {}, h("a", { href: `#/s/${encodeURIComponent(s.id)}` }, s.id)),
          h("td.project", {}, s.project || h("span.muted", {}, "—")),
          h("td.status", {}, pill(s.status), n ? needsBadge(n) : null),
          h("td.summary", { title: s.summary || "" }, s.summary || h("span.muted", {}, "no prompt yet")),
          h("td.num.created", {}, fmtTime(s.createdAt)),
        ),
      ),
    );
    count.textContent = sessions.ready ? `${shown.length} of ${all.length}` : "";
    const w = waiting();
    needsSummary.hidden = w.total === 0;
    needsSummary.textContent = w.sessions === 1 ? "1 session needs you" : `${w.sessions} sessions need you`;
    empty.hidden = !sessions.ready || shown.length > 0;
    empty.textContent = all.length ? `No sessions in project ${route.project}.` : "No sessions yet. Create one with New session and connect a sandbox to it; it shows up here at once.";
  };
  draw();
  const unlistenSessions = sessions.listen(draw);
  const unlistenNeeds = needs.listen(draw);
  return () => {
    unlistenSessions();
    unlistenNeeds();
    inboxView.stop();
  };
}

function needsBadge(n) {
  return h(
    "span.needs",
    { title: n === 1 ? "A permission request waits for your answer" : `${n} permission requests wait for your answer`, dataset: { count: String(n) } },
    n === 1 ? "needs you" : `needs you ×${n}`,
  );
}

const ID_RE = /^[A-Za-z0-9._-]{1,128}$/;

// newSessionForm creates a session (POST /sessions/:id) and then shows
// how to connect a sandbox to it.
function newSessionForm(panel, project) {
  const id = h("input", { id: "new-id", autocomplete: "off", spellcheck: "false", placeholder: "e.g. fix-login", "aria-label": "session id", required: true });
  const proj = h("input", { id: "new-project", autocomplete: "off", spellcheck: "false", placeholder: "optional", "aria-label": "project", value: project || "" });
  const err = h("p.form-error", { id: "new-error", role: "alert" });
  const submit = h("button.primary", { type: "submit", id: "new-submit" }, "Create");
  // A create whose answer was lost leaves a session whose sandbox token
  // nobody has (the server keeps only its hash), and creating it again is
  // a conflict. The way out is a new token, offered with what it costs.
  const rotate = h("p.rotate", { id: "new-rotate-row", hidden: true });
  const offerNewToken = (sid) => {
    const b = h("button", { type: "button", id: "new-rotate" }, "Give it a new sandbox token");
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        const t = await api("POST", `${sessionPath(sid)}/token`);
        panel.replaceChildren(connectCard(panel, { id: sid, sandboxToken: t.sandboxToken }, true));
      } catch (e3) {
        if (e3.status !== 401) err.textContent = e3.code ? `${e3.message} (${e3.code})` : e3.message;
        b.disabled = false;
      }
    });
    rotate.replaceChildren("If you created it and do not have its sandbox token (the answer was lost): ", b, " An agentd using its current token stops.");
    rotate.hidden = false;
  };
  const form = h(
    "form.card.new-session",
    {
      id: "new-session-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const sid = id.value.trim();
        const p = proj.value.trim();
        const bad = !sid ? "Session id: required." : !ID_RE.test(sid) ? "Session id: 1-128 letters, digits, '.', '_' or '-'." : p && !ID_RE.test(p) ? "Project: 1-128 letters, digits, '.', '_' or '-'." : "";
        err.textContent = bad;
        rotate.hidden = true;
        if (bad) return;
        submit.disabled = true;
        try {
          const created = await api("POST", sessionPath(sid), p ? { project: p } : undefined);
          panel.replaceChildren(connectCard(panel, created));
        } catch (e2) {
          if (e2.status !== 401) err.textContent = e2.code ? `${e2.message} (${e2.code})` : e2.message;
          if (e2.code === "conflict") offerNewToken(sid);
          submit.disabled = false;
        }
      },
    },
    h("h2", {}, "New session"),
    h("div.fields", {}, h("label", {}, "Session id", id), h("label", {}, "Project", proj)),
    h("div.buttons", {}, submit, h("button", { type: "button", id: "new-cancel", onclick: () => panel.replaceChildren() }, "Cancel")),
    err,
    rotate,
  );
  return form;
}

// connectCard shows, once, the sandbox token of a session just created (or
// given a new token: rotated) and the agentd command that connects a
// sandbox with it, and follows the session until a sandbox connects or the
// bootstrap timeout removes it.
function connectCard(panel, created, rotated) {
  const sid = created.id;
  const file = `${sid}.token`;
  const token = created.sandboxToken || "";
  const command = `(umask 077; echo ${token} > ${shellQuote(file)})\nagentd --server ${shellQuote(location.origin)} --session ${shellQuote(sid)} --token-file ${shellQuote(file)} -- YOUR-AGENT`;
  const tokenEl = h("code.secret", { id: "connect-token" }, token);
  const cmdEl = h("pre.command", { id: "connect-command" }, command);
  const copyBtn = (el, text, bid) => {
    const b = h("button.copy", { type: "button", id: bid }, "Copy");
    b.addEventListener("click", () => copyText(text, el, b));
    return b;
  };
  const boot = discovery?.limits?.bootstrapTimeoutMs;
  const timeout = boot
    ? `If no sandbox connects within ${fmtDuration(boot)} (the server's bootstrap timeout), the session is removed.`
    : "If no sandbox connects within the server's bootstrap timeout (3 minutes unless rein-server's --bootstrap-timeout says otherwise), the session is removed.";
  const state = h("p.connect-state", { id: "connect-state" });
  const drawState = () => {
    const s = sessions.map.get(sid);
    if (!s) {
      state.dataset.state = sessions.ready ? "removed" : "";
      state.replaceChildren(sessions.ready ? "The session is gone: deleted, or no sandbox connected in time." : "");
    } else if (s.status === "bootstrapping") {
      state.dataset.state = "waiting";
      state.replaceChildren(pill("bootstrapping", "waiting for a sandbox"));
    } else {
      state.dataset.state = "connected";
      state.replaceChildren(pill(s.status), " A sandbox is connected. ", h("a", { href: `#/s/${encodeURIComponent(sid)}`, id: "connect-open" }, `Open ${sid}`));
    }
  };
  const card = h(
    "div.card.connect",
    { id: "connect", dataset: { id: sid } },
    h("div.connect-head", {}, h("h2", {}, "Session ", h("code", {}, sid), rotated ? ": a new sandbox token" : " created"), h("span.grow"), h("button.link", { type: "button", id: "connect-close", onclick: () => panel.replaceChildren() }, "Close")),
    token
      ? [
          h("p", {}, "Connect a sandbox to it: run this where the agent should work, with ", h("code", {}, "YOUR-AGENT"), " your agent's command (agentd's ", h("code", {}, "--protocol"), " picks native, acp, claude or codex). The sandbox token is shown only this once; it goes to agentd in a file, not in its arguments."),
          h("div.copy-row", {}, h("span.copy-label", {}, "Sandbox token"), tokenEl, copyBtn(tokenEl, token, "copy-token")),
          h("div.copy-block", {}, cmdEl, copyBtn(cmdEl, command, "copy-command")),
        ]
      : h("p", {}, "The server gave no sandbox token."),
    h("p.muted", { id: "connect-timeout" }, timeout),
    state,
  );
  drawState();
  const unlisten = sessions.listen(drawState);
  // Stop following once the card is gone.
  const obs = new MutationObserver(() => {
    if (!card.isConnected) {
      unlisten();
      obs.disconnect();
    }
  });
  obs.observe(document.getElementById("app"), { childList: true, subtree: true });
  return card;
}

// ---- session page -----------------------------------------------------------

// Appended fields arrive as artifact_updated {append}; the element showing
// one carries data-field so an append adds a text node instead of
// rebuilding the artifact (a long tool output would otherwise cost O(n²)).
// A field shown as Markdown (data-md) is re-rendered whole instead, at
// most once per animation frame however many appends arrive.
const APPENDABLE = new Set(["output", "inputText"]);

// drafts keeps, per session, what the prompt box held when its page went
// away: another page opened, or the token form put up by a 401 (a
// restart with a rotated token), after which the session page is built
// anew. Only "Forget token" clears them.
const drafts = new Map();

// unsure keeps, per session, the prompt whose sends all failed with their
// fate unknown, and the Idempotency-Key they carried: {text, key}. The
// prompt stays in the box, and sending that same text again reuses the
// key, so if the server had stored it after all the resend is answered
// with the stored command instead of becoming a second prompt that the
// agent runs again. Kept across pages like drafts.
const unsure = new Map();

function sessionPage(app, id) {
  const arts = new Map(); // seq -> artifact
  const els = new Map(); // seq -> element
  let complete = false;

  const statusEl = h("span", { id: "session-status" });
  const summaryEl = h("span.summary", { id: "session-summary" });
  const projectEl = h("span.project", { id: "session-project" });
  const transcript = h("div.transcript", { id: "transcript", "aria-live": "polite" });
  const emptyEl = h("p.empty.muted", { id: "transcript-empty", hidden: true }, "Nothing yet. Send a prompt below.");
  const prompt = h("textarea", { id: "prompt", rows: 2, placeholder: "Send a prompt…  (Enter sends, Shift+Enter for a new line)", "aria-label": "prompt" });
  prompt.value = drafts.get(id) || "";
  drafts.delete(id);
  const send = h("button.primary", { type: "submit", id: "send" }, "Send");
  const abort = h("button.danger", { type: "button", id: "abort", disabled: true, title: "End the running turn" }, "Abort");
  const flash = h("p.form-error", { id: "composer-error", role: "alert" });
  const queueBtn = h("button.small", { type: "button", id: "queue-prompt" }, "Queue it for when a sandbox connects");
  const queueOffer = h("div.composer-offer", { id: "queue-offer", hidden: true }, queueBtn);
  const scroller = h("div.scroller", {}, transcript, emptyEl);
  const del = h("button.danger.small", { type: "button", id: "delete", title: "Delete this session" }, "Delete");
  const confirmBar = h("div.confirm", { id: "delete-confirm", hidden: true, role: "alertdialog" });
  needs.open = id;
  needs.perms.delete(id); // this page's stream starts with a full snapshot
  needs.sync();

  crumbs(h("a", { href: "#/" }, "Sessions"), h("span", {}, id));
  app.append(
    h(
      "section.page.session-page",
      {},
      h(
        "div.session-head",
        {},
        h("h1", { id: "session-id" }, id),
        statusEl,
        projectEl,
        h("span.grow"),
        summaryEl,
        h("a.button.small", { href: `#/s/${encodeURIComponent(id)}/turns`, id: "turns-link" }, "Turn history"),
        del,
      ),
      confirmBar,
      scroller,
      h(
        "form.composer",
        {
          id: "composer",
          onsubmit: (e) => {
            e.preventDefault();
            submit();
          },
        },
        prompt,
        h("div.composer-buttons", {}, send, abort),
        flash,
        queueOffer,
      ),
    ),
  );

  const showError = (err) => {
    flash.textContent = err ? (err.code ? `${err.message} (${err.code})` : err.message) : "";
  };

  // command sends cmd and reports whether it was stored; onError, when
  // given, gets the error of a send that failed; key, when given, is the
  // Idempotency-Key to send it with.
  const command = async (cmd, onError, key) => {
    showError(null);
    try {
      await sendCommand(
        id,
        cmd,
        (err, ms) => {
          flash.textContent = `${err.message}: sending it again in ${ms} ms (it is stored once)`;
        },
        key,
      );
      showError(null);
      return true;
    } catch (err) {
      if (err.status !== 401) showError(err);
      onError?.(err);
      return false;
    }
  };

  // refused is the prompt the server refused for want of a sandbox (409
  // no_sandbox), with the Idempotency-Key it went with: {text, key}, null
  // for none. The server's message says to send it with "queue": true,
  // which nothing here could set; queueOffer does, for that text while it
  // is in the box. The queued send keeps the key: the refusal stored
  // nothing under it, and if the queued send's answer is lost, sending
  // again (queued or not: the key's command is the same, queue aside)
  // gets the stored command back instead of storing the prompt twice.
  let refused = null;
  const offerQueue = (r) => {
    refused = r;
    queueOffer.hidden = !r;
  };
  prompt.addEventListener("input", () => {
    if (refused && prompt.value !== refused.text) offerQueue(null);
  });

  // One prompt is on its way at a time: Enter reaches submit even while
  // the Send button is disabled, and a second send would carry a new
  // Idempotency-Key, so the agent would run the prompt twice.
  let sending = false;
  const submit = async (queue) => {
    const text = prompt.value;
    if (sending || !text.trim()) return;
    sending = send.disabled = queueBtn.disabled = true;
    const was = unsure.get(id);
    const key = queue && refused?.text === text ? refused.key : was?.text === text ? was.key : newIdempotencyKey();
    offerQueue(null);
    let failed = null;
    if (await command(queue ? { type: "prompt", text, queue: true } : { type: "prompt", text }, (err) => (failed = err), key)) {
      prompt.value = "";
      if (drafts.get(id) === text) drafts.delete(id); // the page went away meanwhile
    }
    // A 401 or 403 says nothing of an earlier send: the key is kept for
    // the send after the token form.
    if (unknownFate(failed)) unsure.set(id, { text, key });
    else if (unsure.get(id)?.key === key && failed?.status !== 401 && failed?.status !== 403) unsure.delete(id);
    if (failed?.code === "no_sandbox" && prompt.value === text) {
      flash.textContent = "No sandbox is connected to this session: the prompt was not sent. Queue it to have it delivered when one connects.";
      offerQueue({ text, key });
    }
    sending = send.disabled = queueBtn.disabled = false;
    prompt.focus();
  };
  queueBtn.addEventListener("click", () => submit(true));
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  abort.addEventListener("click", () => command({ type: "abort" }));

  // Deleting asks first: it removes the transcript for good and cuts off
  // the sandbox.
  del.addEventListener("click", () => {
    const yes = h("button.danger", { type: "button", id: "delete-yes" }, "Delete session");
    const no = h("button", { type: "button", id: "delete-no" }, "Cancel");
    const err = h("p.form-error", { id: "delete-error", role: "alert" });
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      try {
        await api("DELETE", sessionPath(id));
        location.hash = "#/";
      } catch (e) {
        if (e.status !== 401) err.textContent = e.code ? `${e.message} (${e.code})` : e.message;
        yes.disabled = no.disabled = false;
      }
    });
    no.addEventListener("click", () => {
      confirmBar.hidden = true;
      del.disabled = false;
    });
    confirmBar.replaceChildren(
      h("span", {}, "Delete session ", h("code", {}, id), "? Its transcript, events and commands are removed for good, and a connected agentd is cut off."),
      h("span.grow"),
      yes,
      no,
      err,
    );
    confirmBar.hidden = false;
    del.disabled = true;
    no.focus();
  });

  // Session record: status and summary, live from the session stream.
  const drawHead = (changed) => {
    if (changed !== null && changed !== id) return;
    const s = sessions.map.get(id);
    statusEl.replaceChildren(s ? pill(s.status) : sessions.ready ? pill("removed", "removed") : "");
    summaryEl.textContent = s?.summary || "";
    summaryEl.title = s?.summary || "";
    projectEl.textContent = s?.project ? `project ${s.project}` : "";
  };
  drawHead(null);
  const unlisten = sessions.listen(drawHead);

  // ---- artifacts ----

  const place = (seq, el) => {
    const old = els.get(seq);
    els.set(seq, el);
    if (old) {
      old.replaceWith(el);
      return;
    }
    // Place by seq: before the first element with a larger seq. Most
    // artifacts are the newest, so look at the end first.
    const last = transcript.lastElementChild;
    if (!last || Number(last.dataset.seq) < seq) {
      transcript.append(el);
      return;
    }
    let next = null;
    for (const child of transcript.children) {
      if (Number(child.dataset.seq) > seq) {
        next = child;
        break;
      }
    }
    transcript.insertBefore(el, next);
  };

  // Abort is for a running turn: the seqs of those, kept as they change
  // rather than looked for among every artifact after each event.
  const running = new Set();
  // The seqs of the permission requests still waiting, kept the same way:
  // the inbox listener below looks only at those.
  const asking = new Set();
  const trackTurn = (a) => {
    if (a.type === "permission") {
      if (a.status === "pending") asking.add(a.seq);
      else asking.delete(a.seq);
    }
    if (a.type !== "turn") return;
    if (a.status === "running") running.add(a.seq);
    else running.delete(a.seq);
  };

  // An answer to a request still waiting may reach the inbox at any time
  // (sent by any client), or leave it (a full snapshot after a
  // reconnect): each such request is drawn again when the answer it
  // shows is no longer the inbox's. So is one whose answer this page is
  // sending (answering) as that send goes on.
  const unlistenInbox = inbox.listen(() => {
    let changed = false;
    for (const seq of asking) {
      const a = arts.get(seq);
      if (!a) continue;
      const an = answerOf(a.id, a.seq);
      const el = els.get(seq);
      if ((el?.dataset.answer ?? "") !== (an ? String(an.commandId) : "") || (el?.dataset.answering ?? "") !== (an ? "" : (sendingOf(a.id, a.seq)?.state ?? ""))) {
        draw(a);
        changed = true;
      }
    }
    if (changed) after();
  });

  // The work that needs the layout is done once per animation frame, not
  // per event: reading it (scrollHeight) after each change made the
  // browser lay the whole transcript out again each time, so a replay of
  // thousands of artifacts took quadratic time (30 s for 4,800) and each
  // streamed delta cost a layout of all of it. Each frame re-renders the
  // Markdown fields that changed (dirty) and, if the view was at the end
  // (within 80 px of the height the last frame left) or toEnd asks,
  // scrolls to the new end.
  const dirty = new Set();
  let frame = 0;
  let height = 0;
  let toEnd = false;
  const paint = () => {
    frame = 0;
    const atEnd = toEnd || height - scroller.scrollTop - scroller.clientHeight < 80;
    toEnd = false;
    for (const key of dirty) {
      const [seq, name] = key.split(" ");
      const a = arts.get(Number(seq));
      const target = els.get(Number(seq))?.querySelector(`[data-md="${name}"]`);
      if (a && target) setMarkdown(target, a[name]);
    }
    dirty.clear();
    height = scroller.scrollHeight;
    if (atEnd) scroller.scrollTop = height;
  };

  const after = (end) => {
    emptyEl.hidden = !complete || arts.size > 0;
    abort.disabled = running.size === 0;
    if (end) toEnd = true;
    if (!frame) frame = requestAnimationFrame(paint);
  };

  // answerOf is the answer stored for this session's permission request
  // req at seq, from whichever client: the approvals inbox carries it
  // (null when none is stored, or the inbox's request under the id is
  // another one).
  const answerOf = (req, seq) => {
    const p = inbox.pending.get(`${id}/${req}`);
    return p && (p.seq == null || p.seq === seq) ? p.answer || null : null;
  };

  // sendingOf is what answering holds for this session's request req at
  // seq (null for nothing).
  const sendingOf = (req, seq) => answering.get(answerKey(id, req, seq)) || null;

  // answer sends an answer to permission request a (sendAnswer): its card,
  // drawn again by the inbox listener above as the send goes on, shows it
  // on its way, then sent, or refused for good.
  const answer = (a, body, choice) => {
    if (sendingOf(a.id, a.seq)?.state === "sending") return;
    let failed = null;
    sendAnswer(id, a.id, a.seq, choice, body, async (cmd) => {
      if (!(await command(cmd, (err) => (failed = err)))) throw failed;
    }).catch(() => {}); // command showed the error
  };

  const draw = (a) => {
    const old = els.get(a.seq);
    const el = renderArtifact(a, { command, old, answerOf, answer, sendingOf });
    el.dataset.seq = a.seq;
    el.dataset.id = a.id;
    el.dataset.type = a.type;
    place(a.seq, el);
  };

  // artifact_snapshot and artifact_created: the artifact replaces whatever
  // is held at its seq.
  const put = ({ artifact }) => {
    arts.set(artifact.seq, artifact);
    trackTurn(artifact);
    draw(artifact);
    needs.track(id, artifact);
    after();
  };

  // artifact_updated: one field, appended or set.
  const update = (u, lastEventId) => {
    const a = arts.get(u.seq);
    if (!a) return; // never happens: created always comes first
    const rev = Number(lastEventId);
    if (rev) a.rev = rev;
    if (Object.hasOwn(u, "append")) {
      a[u.field] = (typeof a[u.field] === "string" ? a[u.field] : "") + u.append;
      const el = els.get(u.seq);
      const target = APPENDABLE.has(u.field) && el?.querySelector(`[data-field="${u.field}"]`);
      if (target) target.append(u.append);
      else if (el?.querySelector(`[data-md="${u.field}"]`)) dirty.add(`${u.seq} ${u.field}`);
      else draw(a);
    } else {
      a[u.field] = u.set;
      trackTurn(a);
      draw(a);
      needs.update(id, u);
    }
    after();
  };

  // What a full replay did not send is gone from the session: off the page.
  const replay = new Replay();
  const drop = (seq) => {
    arts.delete(seq);
    running.delete(seq);
    asking.delete(seq);
    els.get(seq)?.remove();
    els.delete(seq);
    needs.forget(id, seq);
  };

  const stream = new Stream({
    path: `${sessionPath(id)}/stream`,
    ticketPath: `${sessionPath(id)}/stream-ticket`,
    onState: setConn,
    onOpen: () => replay.start(),
    onGone: () => {
      showError({ message: `Session ${id} does not exist (any more).` });
      send.disabled = true;
      abort.disabled = true;
    },
    handlers: {
      artifact_snapshot: (data) => {
        replay.saw(data.artifact.seq);
        put(data);
      },
      artifact_created: put,
      artifact_updated: update,
      snapshot_complete: (c) => {
        replay.end(c, [...arts.keys()], drop);
        complete = true;
        after(true);
      },
    },
  }).start();
  prompt.focus();

  return () => {
    if (prompt.value) drafts.set(id, prompt.value);
    stream.stop();
    unlisten();
    unlistenInbox();
    cancelAnimationFrame(frame);
    if (needs.open === id) needs.open = null;
    needs.sync();
  };
}

// ---- artifact rendering -----------------------------------------------------

// renderArtifact never throws: an artifact whose fields its renderer did
// not expect is shown as its JSON, not left off the page (a throw here
// also stopped every later update of it from showing).
function renderArtifact(a, ctx) {
  const fn = RENDER[a.type] || renderUnknown;
  let el;
  try {
    el = fn(a, ctx);
  } catch {
    el = renderUnknown(a);
  }
  el.classList.add("art", `art-${a.type}`);
  return el;
}

function field(tag, name, value) {
  return h(tag, { dataset: { field: name } }, value || "");
}

function label(text) {
  return h("div.who", {}, text);
}

const RENDER = {
  turn(a) {
    const meta = [];
    // The status already says cancelled or failed; other reasons
    // (max_tokens, refusal, ...) are worth showing.
    if (a.stopReason && !["end_turn", "cancelled", "error"].includes(a.stopReason)) meta.push(a.stopReason.replace(/_/g, " "));
    if (a.endedAt && a.startedAt) meta.push(fmtDuration(a.endedAt - a.startedAt));
    const usage = fmtUsage(a.usage);
    if (usage) meta.push(usage);
    return h(
      "div",
      { dataset: { status: a.status } },
      h("span.turn-line"),
      h("span.turn-label", {}, a.source === "agent" ? "Agent turn" : "Turn"),
      pill(a.status),
      meta.length ? h("span.turn-meta", {}, meta.join(" · ")) : null,
      a.error ? h("span.turn-error", {}, a.error) : null,
      h("span.turn-line"),
    );
  },

  user_message(a) {
    return h("div", {}, label("You"), h("div.bubble.user-text", {}, a.text || ""));
  },

  assistant_text(a) {
    return h(
      "div",
      { dataset: { status: a.status } },
      label("Agent"),
      h("div.bubble.agent-text", {}, mdField("div.text.md", "text", a.text), a.status === "interrupted" ? h("span.tag", {}, "interrupted") : null),
    );
  },

  reasoning(a, { old }) {
    const d = h(
      "details",
      { dataset: { status: a.status } },
      h("summary", {}, a.status === "streaming" ? "Thinking…" : "Thought", a.redacted ? h("span.tag", {}, "redacted") : null),
      mdField("div.reasoning-text.md", "text", a.text),
    );
    d.open = old ? old.open : a.status === "streaming";
    return d;
  },

  tool_call(a) {
    const head = h(
      "div.tool-head",
      {},
      pill(a.status),
      h("span.tool-name", {}, a.name || a.kind || "tool"),
      // A command line is shown as it is; other titles ("Read `main.go`")
      // are inline Markdown.
      a.title ? (a.kind === "execute" ? h("code.tool-title", {}, a.title) : mdField("span.tool-title.md", "title", a.title, true)) : null,
      h("span.grow"),
      a.exitCode != null ? h("span.exit", { dataset: { ok: String(a.exitCode === 0) } }, `exit ${a.exitCode}`) : null,
    );
    const input = !a.title && a.input != null ? h("pre.tool-input", {}, json(a.input)) : null;
    const streamingInput = a.input == null ? field("pre.tool-input", "inputText", a.inputText) : null;
    // The protocol checks only that locations is an array: an element may
    // be anything, null included.
    const locations = Array.isArray(a.locations) && a.locations.length ? h("div.tool-locations", {}, a.locations.map((l) => h("code", {}, typeof l?.path === "string" && l.path ? l.path : json(l)))) : null;
    return h(
      "div.card",
      { dataset: { status: a.status } },
      head,
      input,
      streamingInput,
      locations,
      field("pre.tool-output", "output", a.output),
      a.error ? h("div.tool-error", {}, a.error) : null,
    );
  },

  permission(a, { answer, sendingOf, answerOf }) {
    const options = Array.isArray(a.options) ? a.options : [];
    // An answer stored already, from this page or any other client, is
    // shown in place of the buttons until the agent takes it: the request
    // still waits, but another answer would only be refused (409).
    const stored = a.status === "pending" ? answerOf?.(a.id, a.seq) : null;
    // An answer this page is sending (here or from the Needs-you card)
    // keeps the buttons disabled, the chosen one busy, until it is stored
    // (then stored says so); one refused for good shows the server's
    // reason instead (answered already, or no longer waiting): no button
    // can help.
    const sent = a.status === "pending" && !stored ? sendingOf?.(a.id, a.seq) : null;
    const allow = options.filter((o) => o.kind === "allow_once" || o.kind === "allow_always");
    const reject = options.filter((o) => o.kind === "reject_once" || o.kind === "reject_always");
    const el = h("div.card", { dataset: { status: a.status, answer: stored ? String(stored.commandId) : "", answering: sent?.state ?? "" } });
    let buttons = null;
    if (stored) {
      buttons = h("div.perm-answered", { role: "status" }, answeredText({ options, answer: stored }, true));
    } else if (sent?.state === "refused") {
      buttons = h("div.perm-refused", { role: "status" }, sent.message);
    } else if (a.status === "pending") {
      // The first allow_once (else any allow) option is Approve, the first
      // reject_once (else any reject) is Deny; other options keep their
      // own names. With no reject option Deny dismisses the request.
      const approve = allow.find((o) => o.kind === "allow_once") || allow[0];
      const deny = reject.find((o) => o.kind === "reject_once") || reject[0];
      const btn = (cls, text, body, id) => {
        const choice = id || "";
        const b = h(`button.${cls}${sent?.choice === choice ? ".busy" : ""}`, { type: "button", disabled: !!sent, dataset: { option: choice } }, text);
        b.addEventListener("click", () => answer?.(a, body, choice));
        return b;
      };
      buttons = h(
        "div.perm-buttons",
        {},
        approve ? btn("approve", "Approve", { optionId: approve.id }, approve.id) : null,
        deny ? btn("deny", "Deny", { optionId: deny.id }, deny.id) : btn("deny", "Deny", { outcome: "cancelled" }),
        options.filter((o) => o !== approve && o !== deny).map((o) => btn("secondary", o.name || o.id, { optionId: o.id }, o.id)),
      );
    }
    const chosen = options.find((o) => o.id === a.optionId);
    const result = { approved: "Approved", denied: "Denied", cancelled: "Dismissed" }[a.status];
    const parts = [
      h("div.perm-head", {}, pill(a.status, stored ? "answered" : a.status === "pending" ? "needs approval" : a.status), h("span.perm-title", {}, a.title || "Permission requested")),
      a.input != null ? h("pre.tool-input", {}, json(a.input)) : null,
      buttons,
      result ? h("div.perm-result", {}, chosen ? `${result}: ${chosen.name || chosen.id}` : result) : null,
    ];
    el.append(...parts.filter(Boolean));
    return el;
  },

  plan(a) {
    const entries = Array.isArray(a.entries) ? a.entries : [];
    const done = entries.filter((e) => e.status === "completed").length;
    return h(
      "div.card",
      {},
      h("div.plan-head", {}, h("span.tool-name", {}, "Plan"), h("span.muted", {}, `${done}/${entries.length} done`)),
      h(
        "ul.plan",
        {},
        entries.map((e) => h("li", { dataset: { status: e.status } }, h("span.check", { "aria-hidden": "true" }), mdField("span.plan-text.md", "content", e.content, true), e.priority ? h("span.tag", {}, e.priority) : null)),
      ),
    );
  },

  file_change(a) {
    return h(
      "div.card",
      {},
      h("div.tool-head", {}, pill(a.change, a.change), h("code.tool-title", {}, a.path || "")),
      a.diff ? h("details", {}, h("summary", {}, "diff"), h("pre.diff", {}, a.diff)) : null,
    );
  },

  notice(a) {
    return h("div", { dataset: { level: a.level } }, h("span.notice-level", {}, a.level || "info"), h("span.notice-text", {}, a.message || ""), a.code ? h("code.muted", {}, a.code) : null);
  },
};

function renderUnknown(a) {
  return h("div.card", {}, h("div.tool-head", {}, h("span.tool-name", {}, a.type)), h("pre.tool-input", {}, json(a)));
}

// ---- start --------------------------------------------------------------------

// boot checks the token (or that none is needed), starts the session
// stream and shows the page the URL names.
// ---- turn history -------------------------------------------------------------

// turnsPage lists a session's turns (GET /sessions/:id/turns): prompt,
// status, times, tools, usage, and the digest recorded when each turn
// ended. `rein verify` checks those digests against the stored log.
function turnsPage(app, id) {
  crumbs(h("a", { href: "#/" }, "Sessions"), h("a", { href: `#/s/${encodeURIComponent(id)}` }, id), h("span", {}, "Turns"));
  const body = h("tbody", { id: "turn-rows" });
  const note = h("p.muted", { id: "turns-note" }, "Loading…");
  app.append(
    h(
      "section.page.turns-page",
      {},
      h("div.toolbar", {}, h("h1", {}, `Turn history of ${id}`), h("span.grow"), h("a.button.small", { href: `#/s/${encodeURIComponent(id)}` }, "Back to the transcript")),
      h(
        "div.card.table-card",
        {},
        h(
          "table.turns",
          {},
          h("thead", {}, h("tr", {}, h("th", {}, "Turn"), h("th", {}, "Status"), h("th", {}, "Prompt"), h("th", {}, "Started"), h("th.num", {}, "Took"), h("th", {}, "Tools"), h("th", {}, "Usage"), h("th", {}, "Digest"))),
          body,
        ),
        note,
      ),
      h("p.muted.small-print", {}, "Each digest is SHA-256 chained over the stored event log up to the turn's end, recorded when the turn ended; `rein verify " + id + "` recomputes them from the exported log. It is tamper evidence, not a signature."),
    ),
  );
  let stopped = false;
  (async () => {
    let turns;
    try {
      turns = await api("GET", `${sessionPath(id)}/turns`);
    } catch (e) {
      if (!stopped) note.textContent = e.status === 404 ? `Session ${id} does not exist.` : `Cannot load the turns: ${e.message}`;
      return;
    }
    if (stopped) return;
    note.textContent = turns.length ? `${turns.length} turns` : "No turns yet.";
    body.replaceChildren(
      ...turns.map((t) =>
        h(
          "tr",
          { dataset: { turn: t.id } },
          h("td.id", {}, t.id),
          h("td.status", {}, pill(t.status), t.stopReason && t.stopReason !== "end_turn" ? h("span.muted", {}, ` ${t.stopReason}`) : null),
          h("td.prompt", { title: t.prompt || "" }, t.prompt ?? h("span.muted", {}, "—")),
          h("td", {}, fmtTime(t.startedAt)),
          h("td.num", {}, t.endedAt ? fmtDuration(t.endedAt - t.startedAt) : ""),
          h("td.tools", {}, (t.toolCalls || []).map((c) => h("code", { title: `${c.title || ""} ${c.status || ""}`.trim() }, c.name || c.title || c.id)), (t.toolCalls || []).length ? null : h("span.muted", {}, "—")),
          h("td", {}, fmtUsage(t.usage)),
          h(
            "td.digest",
            { title: t.digest ? `${t.digest}\nlog positions ${t.startPos}–${t.endPos}` : "the turn has not ended" },
            t.digest ? h("code", {}, t.digest.slice(0, 12) + "…") : h("span.muted", {}, "running"),
            t.digest ? h("span.muted", {}, t.digestRecorded ? " recorded" : " computed") : null,
          ),
        ),
      ),
    );
  })();
  return () => {
    stopped = true;
  };
}

async function boot() {
  document.getElementById("forget").hidden = !auth.token;
  try {
    await api("GET", "/sessions?project=-"); // cheap: only checks we may read
  } catch (err) {
    if (err.status === 401 || err.status === 403) return; // api showed the token form
    document.getElementById("app").replaceChildren(h("div.card.token-card", {}, h("h1", {}, "Cannot reach rein-server"), h("p", {}, err.message), h("button.primary", { type: "button", onclick: boot }, "Try again")));
    return;
  }
  if (!discovery) await loadDiscovery();
  sessions.start();
  inbox.start();
  render();
}

window.addEventListener("hashchange", () => {
  if (!asking) render();
});
document.getElementById("forget").addEventListener("click", () => {
  needToken("");
  drafts.clear(); // after needToken, whose teardown keeps the open one's
  unsure.clear();
});
boot();
