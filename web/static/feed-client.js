// The browser side of the feed, shared by every page: one websocket to /ws, the channels'
// state kept current from snapshots and events, reconnection with backoff and jitter, and
// resumption from the last (epoch, seq) of each channel so nothing is missed. Where websockets
// cannot connect (a proxy that strips upgrades), the same feed comes as Server-Sent Events
// from /sse, resumed the same way. The reducer mirrors feed/reducer.py; docs/protocol.md is
// the contract.

const MAX_BACKOFF_MS = 10_000;
const PING_EVERY_MS = 5_000;
const SILENT_MS = 12_000; // no message for this long: the connection is dead, even if open
const OPEN_TIMEOUT_MS = 10_000;
const SSE_AFTER_FAILURES = 3; // websocket attempts in a row that never opened: use /sse...
const WS_RETRY_AFTER_MS = 5 * 60_000; // ...and try websockets again after this long on it

// What a page says about itself to the server, from its own address: ?screen=door-atlas-1
// names a screen (the console lists it), ?transport=sse skips websockets altogether.
export function pageOptions(kind) {
  const params = new URLSearchParams(location.search);
  const screen = params.get("screen");
  return {
    query: { kind, ...(screen ? { screen } : {}) },
    transport: params.get("transport") === "sse" ? "sse" : "auto",
  };
}
const MAX_ANNOUNCEMENTS = 50;
const MAX_CHANGES = 50;

export function initialState(channel) {
  if (channel === "venue") return { announcements: [], schedule: null, changes: [] };
  return {
    status: null, delay: 0, session: null, moved_to: null,
    announcements: [], name: null, names: {}, sessions: [],
  };
}

function alive(a, nowMs) {
  return a && (a.expires_at === null || a.expires_at === undefined || a.expires_at > nowMs);
}

// The state after one event, as the server computes it (unknown kinds change nothing).
export function apply(state, kind, data, ts) {
  const announcements = (state.announcements || []).filter((a) => alive(a, ts));
  if (!data || typeof data !== "object") return state;
  switch (kind) {
    case "status":
      return {
        ...state, announcements, status: data.status, delay: data.delay || 0,
        session: data.session ?? null, moved_to: data.moved_to ?? null,
      };
    case "announce": {
      const kept = announcements.filter((a) => a.id !== data.id);
      kept.push(data);
      return { ...state, announcements: kept.slice(-MAX_ANNOUNCEMENTS) };
    }
    case "retract":
      return { ...state, announcements: announcements.filter((a) => a.id !== data.id) };
    case "program":
      if (!Array.isArray(data.sessions)) return state;
      return {
        ...state, announcements, name: data.room?.name ?? null,
        names: data.room?.names && typeof data.room.names === "object" ? data.room.names : {},
        sessions: data.sessions,
      };
    case "schedule":
      return {
        ...state, announcements,
        schedule: { etag: data.etag, conference: data.conference },
        changes: [...(state.changes || []), ...(data.changes || [])].slice(-MAX_CHANGES),
      };
    default:
      return state;
  }
}

// The session on now and the next one, with the room's delay applied (feed/program.py).
export function nowAndNext(sessions, nowMs, delayMin) {
  const shift = (delayMin || 0) * 60_000;
  const shifted = [];
  for (const s of sessions || []) {
    const start = Date.parse(s.start) + shift;
    const end = Date.parse(s.end) + shift;
    if (end > nowMs) shifted.push({ ...s, startMs: start, endMs: end, delay: delayMin || 0 });
  }
  shifted.sort((a, b) => a.startMs - b.startMs || a.endMs - b.endMs);
  const now = shifted.find((s) => s.startMs <= nowMs && nowMs < s.endMs) || null;
  const next = shifted.find((s) => s.startMs >= nowMs && s !== now) || null;
  return { now, next };
}

// What a room shows at `nowMs`: the operator's status while it holds, else what the program
// says (on, next, over, none). The same rule as feed/situation.py, which gives snapshots their
// `shown`; pages compute it again every second since time passes between events. Both are
// checked against tests/feed/situation-cases.json; docs/protocol.md ("What a room shows").
export function shown(state, nowMs) {
  const delay = Number.isInteger(state.delay) ? state.delay : 0;
  let sessions = Array.isArray(state.sessions) ? state.sessions : [];
  // One session that cannot be placed in time and the server reads none: so do we.
  if (!sessions.every(placeable)) sessions = [];
  const { now, next } = nowAndNext(sessions, nowMs, delay);
  const status = typeof state.status === "string" ? state.status : null;
  if (status !== null && holds(status, state.session, sessions, delay, now, nowMs)) {
    return { source: "operator", status, session: state.session ?? null };
  }
  if (now) return { source: "program", status: "on", session: now.id ?? null };
  if (next && venueDay(next.startMs, next.start) === venueDay(nowMs, next.start)) {
    return { source: "program", status: "next", session: next.id ?? null };
  }
  return { source: "program", status: sessions.length ? "over" : "none", session: null };
}

const ISO_OFFSET = /(?:([+-])(\d{2}):?(\d{2})|Z)$/i;

function placeable(s) {
  return Boolean(s) && typeof s.start === "string" && typeof s.end === "string"
    && ISO_OFFSET.test(s.start) && ISO_OFFSET.test(s.end)
    && Number.isFinite(Date.parse(s.start)) && Number.isFinite(Date.parse(s.end));
}

function holds(status, sessionId, sessions, delay, now, nowMs) {
  const named = typeof sessionId === "string" ? sessions.find((s) => s.id === sessionId) : null;
  if (named) {
    const start = Date.parse(named.start) + delay * 60_000;
    const end = Date.parse(named.end) + delay * 60_000;
    if (end <= nowMs) return false; // its session is over: the next one inherits nothing
    if (start > nowMs) return now === null; // about a later session: not while another is on
    return status !== "upcoming"; // its session has begun
  }
  if (!sessions.length) return true; // nothing in the program to contradict it
  if (status === "upcoming" || status === "ended") return now === null;
  return true; // about the room, not a session: until the operator says otherwise
}

// The venue's day of `ms`, read with the UTC offset the program gives `iso` (sessions carry
// the venue's offset at their own instant), as a day count.
function venueDay(ms, iso) {
  const m = ISO_OFFSET.exec(iso);
  const offset = m && m[1] ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
  return Math.floor((ms + offset * 60_000) / 86_400_000);
}

// A text for a reader of `lang`: their language, then English, French, Arabic, then any.
export function inLanguage(value, lang) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  for (const choice of [lang, lang.split("-")[0], "en", "fr", "ar"]) {
    if (value[choice]) return value[choice];
  }
  return Object.values(value)[0] || "";
}

// Venue time survives a reload, so a kiosk that comes back offline still shows the right times.
const VENUE_KEY = "feed-venue-time";

function validVenue(venue) {
  return Boolean(venue) && Array.isArray(venue.offsets) && venue.offsets.length > 0
    && venue.offsets.every((o) => Array.isArray(o) && Number.isFinite(o[0]) && Number.isFinite(o[1]));
}

function savedVenue() {
  try {
    const venue = JSON.parse(localStorage.getItem(VENUE_KEY) || "null");
    return validVenue(venue) ? venue : null;
  } catch {
    return null;
  }
}

export class FeedClient extends EventTarget {
  // `persist` names a localStorage entry that keeps the last state across reloads: the page
  // shows it at once, even offline, and resumes from it instead of starting over.
  constructor(channels, { url, persist, query, transport } = {}) {
    super();
    this.channels = [...new Set(channels)];
    const search = new URLSearchParams(query || {}).toString();
    this.query = search ? `?${search}` : "";
    this.url = (url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`)
      + this.query;
    this.mode = transport === "sse" || typeof WebSocket !== "function" ? "sse" : "ws";
    this.forcedSse = this.mode === "sse";
    this.sseSince = Date.now();
    this.failures = 0;
    this.es = null;
    this.acked = new Set(); // announcements this screen said it shows, on this connection
    this.states = new Map(); // channel -> {epoch, seq, state}
    this.unknown = new Set(); // channels the server says do not exist (not in the program)
    this.persist = persist;
    if (persist) {
      try {
        const saved = JSON.parse(localStorage.getItem(persist) || "{}");
        for (const channel of this.channels) if (saved[channel]) this.states.set(channel, saved[channel]);
      } catch {
        localStorage.removeItem(persist);
      }
    }
    this.venue = savedVenue(); // venue time as the server last told it: see venueOffset()
    this.online = false;
    this.offlineSince = Date.now();
    this.clock = { server: Date.now(), local: performance.now(), rate: 1 };
    this.attempt = 0;
    this.ws = null;
    this.pinger = null;
    this.heard = 0;
    this.resyncing = new Set(); // channels asked again after an unexpected seq
  }

  // The venue's UTC offset in minutes at `ms`, from the table the server sent (its tz data, not
  // this browser's, which may be years older or newer); null when the server never sent one.
  venueOffset(ms) {
    const offsets = this.venue?.offsets;
    if (!Array.isArray(offsets) || !offsets.length) return null;
    let minutes = offsets[0][1];
    for (const [from, offset] of offsets) {
      if (from > ms) break;
      minutes = offset;
    }
    return Number.isFinite(minutes) ? minutes : null;
  }

  // The server's time, which pages show, whatever the device's clock says.
  now() {
    return this.clock.server + (performance.now() - this.clock.local) * this.clock.rate;
  }

  start() {
    this.connect();
    addEventListener("online", () => this.retrySoon());
    if (this.persist) addEventListener("pagehide", () => this.save());
    return this;
  }

  connect() {
    if (this.mode === "sse" && Date.now() - this.sseSince > WS_RETRY_AFTER_MS
        && typeof WebSocket === "function" && !this.forcedSse) {
      this.mode = "ws"; // the network may let websockets through again
      this.failures = 0;
    }
    if (this.mode === "sse") {
      this.connectSse();
      return;
    }
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.failed();
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    // A connection that neither opens nor fails (a hung server, a captive portal) is retried.
    const opening = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) {
        this.failed(); // hung, never opened: it counts as much as a refusal
        this.abandon(ws);
      }
    }, OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(opening);
      opened = true;
      this.failures = 0;
      this.acked.clear();
      const since = {};
      for (const [channel, s] of this.states) since[channel] = { epoch: s.epoch, seq: s.seq };
      this.send({ type: "subscribe", channels: this.channels, since });
      this.heard = performance.now();
      // A dead network often closes nothing: ask for a pong regularly, give up on silence.
      this.pinger = setInterval(() => {
        if (performance.now() - this.heard > SILENT_MS) this.abandon(ws);
        else this.send({ type: "ping" });
      }, PING_EVERY_MS);
    };
    ws.onmessage = (message) => this.heardText(message.data);
    ws.onclose = (event) => {
      clearInterval(this.pinger);
      if (!opened) this.failed();
      if (this.ws !== ws) return;
      this.ws = null;
      this.resyncing.clear();
      this.setOnline(false);
      // 1003 and 1008 mean this page did something wrong: retrying soon would only repeat it.
      this.scheduleReconnect(event.code === 1003 || event.code === 1008 ? MAX_BACKOFF_MS : 0);
    };
  }

  // A message from the server, on either transport: anything but a JSON object is ignored.
  heardText(data) {
    this.heard = performance.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg && typeof msg === "object") this.receive(msg);
  }

  // A websocket that never opened, again: past a few, while the server itself answers (it is
  // not simply down or restarting), the network does not let websockets through.
  failed() {
    this.failures += 1;
    if (this.failures < SSE_AFTER_FAILURES || typeof EventSource !== "function") return;
    this.failures = 0;
    const health = this.url.replace(/^ws/, "http").replace(/\/ws(\?.*)?$/, "/healthz");
    fetch(health, { cache: "no-store" }).then((answer) => {
      if (answer.ok && this.mode === "ws") {
        this.mode = "sse";
        this.sseSince = Date.now();
      }
    }).catch(() => {});
  }

  // The feed as Server-Sent Events: one-way, so the channels and the position to resume from
  // go in the address; the server sends a pong every few seconds, so silence still means a
  // dead connection. Reconnection is ours, not EventSource's, to resume from our own state.
  connectSse() {
    const base = this.url.replace(/^ws/, "http").replace(/\/ws(\?.*)?$/, "/sse");
    const params = new URLSearchParams(this.query.slice(1));
    params.set("channels", this.channels.join(","));
    const since = this.streamId();
    if (since) params.set("since", since);
    let es;
    try {
      es = new EventSource(`${base}?${params}`);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.es = es;
    this.heard = performance.now();
    this.pinger = setInterval(() => {
      if (performance.now() - this.heard > SILENT_MS) this.abandonSse(es);
    }, PING_EVERY_MS);
    es.onmessage = (message) => this.heardText(message.data);
    es.onerror = () => this.abandonSse(es);
  }

  // Where this page stands, as the server's SSE ids say it: `<epoch>:<seq>` for one channel,
  // `<channel>=<epoch>:<seq>,...` for several.
  streamId() {
    const held = this.channels.filter((c) => this.states.has(c));
    if (this.channels.length === 1 && held.length === 1) {
      const s = this.states.get(held[0]);
      return `${s.epoch}:${s.seq}`;
    }
    return held.map((c) => `${c}=${this.states.get(c).epoch}:${this.states.get(c).seq}`).join(",");
  }

  abandonSse(es) {
    clearInterval(this.pinger);
    es.onmessage = null;
    es.onerror = null;
    es.close();
    if (this.es !== es) return;
    this.es = null;
    this.resyncing.clear();
    this.setOnline(false);
    this.scheduleReconnect();
  }

  // A screen says an announcement is on display (delivery receipts for emergencies).
  ack(id) {
    if (this.acked.has(id) || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.acked.add(id);
    this.send({ type: "ack", id });
  }

  // Give up on a socket that went silent: a close handshake with a dead peer could take
  // minutes, so the page says it is offline and reconnects now.
  abandon(ws) {
    clearInterval(this.pinger);
    ws.onclose = null;
    ws.onmessage = null;
    ws.close();
    if (this.ws !== ws) return;
    this.ws = null;
    this.resyncing.clear();
    this.setOnline(false);
    this.scheduleReconnect();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  scheduleReconnect(atLeast = 0) {
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt);
    const delay = Math.min(MAX_BACKOFF_MS, Math.max(atLeast, base * (0.5 + Math.random() / 2)));
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  retrySoon() {
    if (!this.ws && !this.es) {
      this.attempt = 0;
      this.scheduleReconnect();
    }
  }

  setOnline(online) {
    if (online === this.online) return;
    this.online = online;
    if (!online) this.offlineSince = this.now();
    this.dispatchEvent(new CustomEvent("connection", { detail: { online } }));
  }

  syncClock(serverTime, rate) {
    this.clock = { server: serverTime, local: performance.now(), rate: rate ?? this.clock.rate };
  }

  receive(msg) {
    switch (msg.type) {
      case "hello":
        this.syncClock(msg.server_time, msg.clock_rate);
        if (validVenue(msg.venue)) {
          this.venue = msg.venue;
          try {
            localStorage.setItem(VENUE_KEY, JSON.stringify(msg.venue));
          } catch {
            // Storage full or refused: venue time still holds for this visit.
          }
        }
        this.setOnline(msg.live !== false);
        break;
      case "pong":
        this.syncClock(msg.server_time);
        break;
      case "health":
        this.setOnline(msg.live);
        break;
      case "subscribed":
        this.attempt = 0; // a server that really serves: back to quick retries next time
        this.resyncing.delete(msg.channel);
        if (this.unknown.delete(msg.channel)) this.changed(msg.channel, null); // a new program
        break;
      case "snapshot":
        this.states.set(msg.channel, { epoch: msg.epoch, seq: msg.seq, state: msg.state });
        this.changed(msg.channel, null);
        break;
      case "event": {
        const held = this.states.get(msg.channel);
        if (!held) return;
        if (held.epoch !== msg.epoch || msg.seq !== held.seq + 1) {
          if (held.epoch === msg.epoch && msg.seq <= held.seq) return; // already applied
          // A gap should never happen; if it does, ask once to resume from what we have.
          if (!this.resyncing.has(msg.channel)) {
            this.resyncing.add(msg.channel);
            if (this.es) {
              this.abandonSse(this.es); // a stream cannot be asked: open it again from here
              return;
            }
            this.send({
              type: "subscribe", channels: [msg.channel],
              since: { [msg.channel]: { epoch: held.epoch, seq: held.seq } },
            });
          }
          return;
        }
        held.state = apply(held.state, msg.kind, msg.data, msg.ts);
        held.seq = msg.seq;
        this.changed(msg.channel, msg);
        break;
      }
      case "error":
        if (msg.code === "not_found" && Array.isArray(msg.channels)) {
          for (const channel of msg.channels) {
            this.unknown.add(channel);
            this.changed(channel, null);
          }
        }
        break;
      default:
        break; // subscribed, unsubscribed and types added later
    }
  }

  changed(channel, event) {
    this.dispatchEvent(new CustomEvent("change", { detail: { channel, event } }));
    if (this.persist && !this.saving) this.saving = setTimeout(() => this.save(), 500);
  }

  save() {
    clearTimeout(this.saving);
    this.saving = null;
    try {
      localStorage.setItem(this.persist, JSON.stringify(Object.fromEntries(this.states)));
    } catch {
      // Storage full or refused: the page still works, it just starts empty next time.
    }
  }

  state(channel) {
    return this.states.get(channel)?.state || initialState(channel);
  }

  // Announcements for these channels that have not expired, emergencies first.
  announcements(channels) {
    const now = this.now();
    const rank = { emergency: 0, important: 1, info: 2 };
    const seen = new Map();
    for (const channel of channels) {
      for (const a of this.state(channel).announcements || []) {
        if (alive(a, now)) seen.set(a.id, a);
      }
    }
    return [...seen.values()].sort((a, b) => rank[a.priority] - rank[b.priority] || b.ts - a.ts);
  }
}
