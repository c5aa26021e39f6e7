// Rendering helpers shared by the pages. Every text from operators, moderators or the imported
// program goes through textContent: it is shown, never parsed as HTML.
import { inLanguage, nowAndNext, shown } from "/static/feed-client.js";
import { LANGUAGES, setLanguage, t } from "/static/i18n.js";

export const $ = (id) => document.getElementById(id);

const shownKeys = new WeakMap();

// Rebuild a part of the page only when what it shows changed: live regions then speak once
// per change, and buttons keep their focus and the taps in progress.
export function keyed(container, key, build) {
  if (shownKeys.get(container) === key) return;
  shownKeys.set(container, key);
  container.replaceChildren(...build());
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Run each part of a render on its own: a bad value in one never leaves the others stale.
export function guarded(...parts) {
  for (const part of parts) {
    try {
      part();
    } catch (error) {
      console.error(error);
    }
  }
}

export function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

// Names in another script keep their own direction inside the page's.
export function bdi(text) {
  return el("bdi", text);
}

// Times stay left to right inside Arabic text (U+2066 LEFT-TO-RIGHT ISOLATE ... U+2069).
export function ltr(text) {
  return `\u2066${text}\u2069`;
}

const formats = new Map();

// An instant as the venue's wall clock reads it ("10:00"). The offset comes from the server's
// table (feed.venueOffset): the wall clock is then read in UTC, so this browser's own tz
// database plays no part. Only a server that sent no table leaves it to the browser's zone data.
export function venueTimeText(feed, lang, ms, options = { hour: "2-digit", minute: "2-digit" }) {
  const offset = feed.venueOffset(ms);
  const zone = offset === null
    ? feed.venue?.zone || feed.state("venue").schedule?.conference?.timezone || "UTC" : "UTC";
  const key = JSON.stringify([lang, zone, options]);
  let format = formats.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat(lang === "ar" ? "ar-MA" : lang, {
      ...options, timeZone: zone, hourCycle: "h23",
    });
    formats.set(key, format);
  }
  return format.format(new Date(ms + (offset ?? 0) * 60_000));
}

export function clockText(feed, lang, ms) {
  return venueTimeText(feed, lang, ms);
}

export function trackColour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 70% 60%)`;
}

export function sessionTitle(session, lang) {
  const titles = session.titles && Object.keys(session.titles).length ? session.titles : null;
  return inLanguage(titles || session.title, lang);
}

// A room's name in the reader's language, with the fallback announcements use: `room` is a
// program room ({id, name, names}) or a room's state ({name, names}); `fallback` (its id) when
// the program names it not at all.
export function roomName(room, lang, fallback = "") {
  if (!room) return fallback;
  const names = room.names && Object.keys(room.names).length ? room.names : null;
  return inLanguage(names || room.name, lang) || fallback;
}

// The program's rooms by id, so that a moved room names its destination in the reader's
// language; each page fills it from GET /api/schedule.
const programRooms = new Map();

export function knowRooms(rooms) {
  programRooms.clear();
  for (const r of rooms || []) if (r && typeof r.id === "string") programRooms.set(r.id, r);
}

// A session's track in the reader's language (its colour stays the track's own).
export function trackName(session, lang) {
  const tracks = session.tracks && Object.keys(session.tracks).length ? session.tracks : null;
  return inLanguage(tracks || session.track, lang);
}

// Whole minutes from now until `ms` away, never negative: "10 minutes left", "in 5 minutes"
// (i18n.js words the count with the language's plural rules).
export function minutes(ms) {
  return Math.max(0, Math.ceil(ms / 60_000));
}

// A session's speakers, track, language (on screens) and when, as one line.
export function sessionMeta(session, whenText, { language = true, lang = null } = {}) {
  const meta = el("p", null, { class: "meta" });
  if (session.speakers?.length) meta.append(bdi(session.speakers.join(", ")));
  if (session.track) {
    const track = el("span", null, { class: "track" });
    track.style.setProperty("--track", trackColour(session.track));
    track.append(bdi(lang ? trackName(session, lang) : session.track));
    meta.append(track);
  }
  if (language && session.language) meta.append(el("span", session.language, { class: "lang" }));
  if (whenText) meta.append(el("span", whenText, { class: "when" }));
  return meta;
}

export function sessionBlock(session, lang, whenText) {
  const box = el("div");
  const title = el("p", null, { class: "title" });
  title.append(bdi(sessionTitle(session, lang)));
  box.append(title, sessionMeta(session, whenText, { lang }));
  return box;
}

// A room's card heading: its name and what the room shows (see badge).
export function roomHeading(name, state, lang, feed) {
  const heading = el("h2");
  heading.append(bdi(name));
  const status = el("span", null, { class: "badge" });
  badge(status, state, lang, feed);
  heading.append(status);
  return heading;
}

// The operator's status in words ("" before any).
export function statusText(state, lang) {
  if (!state.status) return "";
  const to = state.moved_to ? roomName(programRooms.get(state.moved_to), lang, state.moved_to) : "";
  return t(lang, `status_${state.status}`, { n: state.delay || 0, room: to });
}

// What the program says of the room (`outcome` from shown() with source "program"): on now,
// next at HH:MM, over for today, nothing scheduled; and the room's delay, which still shifts it.
export function programText(outcome, state, lang, feed, nowMs) {
  const delay = Number.isInteger(state.delay) ? state.delay : 0;
  let text = t(lang, `shown_${outcome.status}`);
  if (outcome.status === "next") {
    const { next } = nowAndNext(state.sessions, nowMs, delay);
    text = t(lang, "shown_next", { t: ltr(clockText(feed, lang, next ? next.startMs : nowMs)) });
  }
  if (delay > 0 && (outcome.status === "on" || outcome.status === "next")) {
    text += ` · ${t(lang, "late_by", { n: delay })}`;
  }
  return text;
}

// The room's badge: the operator's status while it holds (feed-client.js `shown`, the rule of
// docs/protocol.md), else the program's word for the room, behind a label that says so: a
// screen never shows an empty pill, nor a status its own "now" contradicts. Never faded: the
// label marks it, at full contrast.
export function badge(node, state, lang, feed) {
  const now = feed.now();
  const outcome = shown(state, now);
  const fromProgram = outcome.source === "program";
  const text = fromProgram ? programText(outcome, state, lang, feed, now) : statusText(state, lang);
  const label = fromProgram ? t(lang, "by_program") : "";
  keyed(node, JSON.stringify([label, text]), () => (fromProgram
    ? [el("span", label, { class: "source" }), " · ", el("span", text, { class: "text" })]
    : [text]));
  node.hidden = false;
  node.dataset.source = outcome.source;
  node.dataset.status = outcome.status;
  if (outcome.session === null) delete node.dataset.session;
  else node.dataset.session = outcome.session;
  return outcome;
}

// The language buttons; `changed(lang)` re-renders the page.
export function languageButtons(container, current, changed) {
  container.setAttribute("aria-label", t(current, "language"));
  container.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => {
    const button = el("button", name, {
      type: "button", lang: code, "aria-pressed": String(code === current),
    });
    button.addEventListener("click", () => {
      setLanguage(code);
      languageButtons(container, code, changed);
      changed(code);
    });
    return button;
  }));
}

// The offline banner, and the emergency that takes over the whole screen.
export function connectionBanner(node, feed, lang) {
  node.hidden = feed.online;
  if (!feed.online) {
    // In the server's time and the venue's zone, like the clock beside it.
    const since = clockText(feed, lang, feed.offlineSince);
    setText(node, t(lang, feed.ws ? "paused" : "offline", { t: since }));
  }
  document.body.dataset.online = String(feed.online);
}

export function emergencyOverlay(node, emergency, lang) {
  node.hidden = !emergency;
  if (emergency) {
    setText(node.querySelector(".emergency-label"), t(lang, "emergency"));
    const text = node.querySelector(".emergency-text");
    setText(text, inLanguage(emergency.text, lang));
    fitInside(node, text);
  }
}

const fitted = new WeakMap();

// The whole emergency on the screen: a long text gets smaller type until it fits, down to a
// legible floor (past it the overlay scrolls, from the text's start: screen.css). Again only
// when the text or the screen's size changed.
function fitInside(box, text) {
  const key = `${innerWidth}x${innerHeight} ${text.textContent}`;
  if (fitted.get(text) === key) return;
  fitted.set(text, key);
  text.style.fontSize = "";
  let size = parseFloat(getComputedStyle(text).fontSize);
  while (box.scrollHeight > box.clientHeight && size > 20) {
    size = Math.max(20, size * 0.9);
    text.style.fontSize = `${size}px`;
  }
}

export function announcementItems(notes, lang) {
  return notes.map((a) => {
    const item = el("li", null, { "data-priority": a.priority });
    if (a.priority === "important") item.append(el("span", "!", { class: "priority" }));
    item.append(bdi(inLanguage(a.text, lang)));
    return item;
  });
}
