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

// What a page says about itself to the server, from its own address: ?transport=sse skips
// websockets altogether. A kiosk's screen token (feed token create --role screen) comes in the
// address's fragment, #token=..., which browsers never send to a server nor in a referrer: the
// page presents it on the websocket only, and the console then lists the screen by its name.
export function pageOptions(kind) {
  const params = new URLSearchParams(location.search);
  const screen = params.get("screen"); // from before screen tokens: only says kind=screen
  const screenToken = new URLSearchParams(location.hash.slice(1)).get("token") || null;
  return {
    query: { kind, ...(screen ? { screen } : {}) },
    transport: params.get("transport") === "sse" ? "sse" : "auto",
    screenToken,
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

// ---- The reducer: feed/reducer.py and feed/models.py, rule for rule ------------------------------
// Data of a known kind that breaks its rules leaves the state exactly as it was, as on the server;
// tests/reducer_vectors.json holds the cases both must agree on. Applying one event can never
// throw: a screen that met one bad event must still apply the next.

const STATUSES = new Set([
  "upcoming", "starting", "live", "delayed", "full", "ended", "cancelled", "moved",
]);
const PRIORITIES = new Set(["info", "important", "emergency"]);
const MAX_DELAY_MINUTES = 24 * 60;
const MAX_TEXT = 2000;
const MAX_SESSION_ID = 200;
const MAX_LANGUAGES = 8;
const MAX_ROOMS_PER_ANNOUNCEMENT = 500;
const ROOM_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const LANGUAGE = /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$/;
const ANNOUNCEMENT_ID = /^[\x20-\x7e]{1,64}$/;
const CONTROL = /[\x00-\x08\x0b-\x1f]/; // newline and tab are allowed
const INSTANT = new RegExp("^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})"
  + "(?::([0-9]{2})(?:\\.[0-9]{1,6})?)?(?:Z|[+-]([0-9]{2}):([0-9]{2}))$");

// Characters that show nothing: feed/models.py's INVISIBLE, the same frozen table, so that the
// line falls in the same place whatever Unicode version this browser has.
export const INVISIBLE = [
  [0x0000, 0x0020], [0x007F, 0x00A0], [0x00AD, 0x00AD], [0x034F, 0x034F], [0x0600, 0x0605],
  [0x061C, 0x061C], [0x06DD, 0x06DD], [0x070F, 0x070F], [0x0890, 0x0891], [0x08E2, 0x08E2],
  [0x115F, 0x1160], [0x1680, 0x1680], [0x17B4, 0x17B5], [0x180B, 0x180F], [0x2000, 0x200F],
  [0x2028, 0x202F], [0x205F, 0x206F], [0x2800, 0x2800], [0x3000, 0x3000], [0x3164, 0x3164],
  [0xFE00, 0xFE0F], [0xFEFF, 0xFEFF], [0xFFA0, 0xFFA0], [0xFFF0, 0xFFFB], [0x110BD, 0x110BD],
  [0x110CD, 0x110CD], [0x13430, 0x1343F], [0x1BCA0, 0x1BCA3], [0x1D173, 0x1D17A],
  [0xE0000, 0xE0FFF],
];
const VISIBLE = new RegExp(`[^${INVISIBLE.map(([lo, hi]) =>
  `\\u{${lo.toString(16)}}-\\u{${hi.toString(16)}}`).join("")}]`, "u");

// Whether a text has at least one character a reader can see.
export function visible(text) {
  return typeof text === "string" && VISIBLE.test(text);
}

class Invalid extends Error {}

function check(ok, why) {
  if (!ok) throw new Invalid(why);
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
// A field as Python's dict.get reads it: present (even null) or the fallback.
const field = (object, key, fallback = null) => (Object.hasOwn(object, key) ? object[key] : fallback);
// JSON has one number type: 5.0 is 5; past 2**53 - 1 a number is not exact, so not whole.
const integer = (value) => (Number.isSafeInteger(value) ? value : null);

function characters(text) {
  let count = 0;
  for (const _ of text) count += 1; // code points, as Python counts, not UTF-16 units
  return count;
}

function text(value) {
  check(visible(value), "a text needs a visible character");
  check(characters(value) <= MAX_TEXT && !CONTROL.test(value), "text too long or with controls");
  return value;
}

function texts(value) {
  if (!isObject(value)) return text(value);
  const entries = Object.entries(value);
  check(entries.length >= 1 && entries.length <= MAX_LANGUAGES, "1 to 8 languages");
  for (const [lang, one] of entries) {
    check(LANGUAGE.test(lang), "a language code");
    text(one);
  }
  return value;
}

function announcementId(value) {
  check(typeof value === "string" && ANNOUNCEMENT_ID.test(value), "an announcement id");
  return value;
}

function statusData(data) {
  check(isObject(data), "a status is an object");
  const status = field(data, "status");
  check(typeof status === "string" && STATUSES.has(status), "a known status");
  const delay = integer(field(data, "delay", 0));
  check(delay !== null && delay >= 0 && delay <= MAX_DELAY_MINUTES, "a delay of 0-1440 min");
  const session = field(data, "session");
  check(session === null || (visible(session) && characters(session) <= MAX_SESSION_ID),
    "a session id");
  const movedTo = field(data, "moved_to");
  check(movedTo === null || (status === "moved" && typeof movedTo === "string"
    && ROOM_ID.test(movedTo)), "moved_to: a room id, with moved");
  return { status, delay, session, moved_to: movedTo };
}

function announcementData(data) {
  check(isObject(data), "an announcement is an object");
  const ts = integer(field(data, "ts"));
  check(ts !== null, "ts: a whole number");
  const expiresRaw = field(data, "expires_at");
  const expiresAt = expiresRaw === null ? null : integer(expiresRaw);
  check(expiresRaw === null || expiresAt !== null, "expires_at: a whole number or null");
  const id = announcementId(field(data, "id"));
  const rooms = field(data, "rooms", []);
  check(Array.isArray(rooms), "rooms: a list");
  for (const room of rooms) check(typeof room === "string" && ROOM_ID.test(room), "a room id");
  const cleanRooms = [...new Set(rooms)].sort();
  check(cleanRooms.length <= MAX_ROOMS_PER_ANNOUNCEMENT, "at most 500 rooms");
  const priority = field(data, "priority", "info");
  check(expiresAt === null || priority !== "emergency", "an emergency does not expire");
  check(expiresAt === null || expiresAt > ts, "expires after it is posted");
  const clean = texts(field(data, "text"));
  check(typeof priority === "string" && PRIORITIES.has(priority), "a known priority");
  return { id, text: clean, priority, rooms: cleanRooms, ts, expires_at: expiresAt };
}

function retraction(data) {
  check(isObject(data), "a retraction is an object");
  announcementId(field(data, "id"));
  const reason = field(data, "reason");
  check(reason === null || typeof reason === "string", "reason: a string");
  return data;
}

function daysIn(year, month) {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
}

function instant(value) {
  const match = typeof value === "string" ? INSTANT.exec(value) : null;
  check(match !== null, "an ISO 8601 time with an offset");
  const [year, month, day, hour, minute, second, offHours, offMinutes] =
    match.slice(1).map((part) => Number(part ?? 0));
  check(year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysIn(year, month)
    && hour <= 23 && minute <= 59 && second <= 59 && offHours <= 23 && offMinutes <= 59,
  "a real date, time and offset");
}

function changes(value) {
  check(Array.isArray(value) && value.every(isObject), "changes: a list of objects");
  return value;
}

function programData(data) {
  check(isObject(data), "a program is an object");
  const room = field(data, "room");
  check(isObject(room), "a program's room");
  const name = field(room, "name");
  check(name === null || typeof name === "string", "a room's name");
  const sessions = field(data, "sessions");
  check(Array.isArray(sessions), "sessions: a list");
  for (const session of sessions) {
    check(isObject(session), "a session is an object");
    const id = field(session, "id");
    check(typeof id === "string" && id !== "", "a session's id");
    instant(field(session, "start"));
    instant(field(session, "end"));
  }
  changes(field(data, "changes", []));
  return data;
}

function scheduleData(data) {
  check(isObject(data), "a schedule is an object");
  const etag = field(data, "etag");
  check(typeof etag === "string" && etag !== "", "an etag");
  const conference = field(data, "conference");
  check(conference === null || isObject(conference), "conference: an object");
  changes(field(data, "changes", []));
  const total = field(data, "changes_total");
  check(total === null || (integer(total) !== null && total >= 0), "changes_total >= 0");
  return data;
}

const VALIDATORS = {
  status: statusData, announce: announcementData, retract: retraction,
  program: programData, schedule: scheduleData,
};

// A room's name per language: only texts are kept (feed/reducer.py's _names).
function names(value) {
  if (!isObject(value)) return {};
  return Object.fromEntries(Object.entries(value).filter(([, one]) => typeof one === "string"));
}

function alive(a, nowMs) {
  if (!isObject(a)) return false;
  const expiresAt = integer(a.expires_at); // an expiry that is not a whole number never comes due
  return expiresAt === null || expiresAt > nowMs;
}

function unexpired(announcements, nowMs) {
  return Array.isArray(announcements) ? announcements.filter((a) => alive(a, nowMs)) : [];
}

function reduce(state, kind, data, ts) {
  if (!Object.hasOwn(VALIDATORS, kind)) return state; // a kind for newer readers
  const clean = VALIDATORS[kind](data);
  const announcements = unexpired(state.announcements, ts);
  switch (kind) {
    case "status":
      return { ...state, ...clean, announcements };
    case "announce": {
      const kept = announcements.filter((a) => a.id !== clean.id);
      kept.push(clean);
      return { ...state, announcements: kept.slice(-MAX_ANNOUNCEMENTS) };
    }
    case "retract":
      return { ...state, announcements: announcements.filter((a) => a.id !== clean.id) };
    case "program": {
      const room = field(clean, "room");
      return {
        ...state, name: field(room, "name"), names: names(field(room, "names")),
        sessions: field(clean, "sessions"), announcements,
      };
    }
    default: { // schedule
      const held = Array.isArray(state.changes) ? state.changes : [];
      return {
        ...state,
        schedule: { etag: field(clean, "etag"), conference: field(clean, "conference") },
        changes: [...held, ...field(clean, "changes", [])].slice(-MAX_CHANGES),
        announcements,
      };
    }
  }
}

// The state after one event, as the server computes it. Never throws: an event it cannot apply
// leaves the state as it was (only the position advances), and the next events still apply.
export function apply(state, kind, data, ts) {
  try {
    return reduce(state, kind, data, ts);
  } catch (error) {
    if (!(error instanceof Invalid)) console.error("feed: an event could not be applied", error);
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
  constructor(channels, { url, persist, query, transport, screenToken } = {}) {
    super();
    this.screenToken = screenToken || null;
    this.screen = null; // the name the server knows this screen by, once its token is accepted
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
      this.screen = null;
      // First, so that the server knows the screen before anything it acknowledges.
      if (this.screenToken) this.send({ type: "identify", token: this.screenToken });
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
    if (!this.screen || this.acked.has(id) || !this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return; // only a screen its token named acknowledges; anonymous pages are viewers
    }
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
      case "identified":
        this.screen = msg.screen;
        this.dispatchEvent(new CustomEvent("screen", { detail: { screen: msg.screen } }));
        break;
      case "error":
        if (msg.code === "unauthorized" || msg.code === "forbidden") this.screen = null;
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
