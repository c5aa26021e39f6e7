// The whole program on the phone, without the page: the venue's days, search, what is true of
// each session now (the room's status, its delay, the last import's changes), the clashes of
// "my day", and what changed in a favourite since its owner last looked. Pure functions of the
// program (GET /api/schedule), the rooms' states from the feed and the server's time, so the
// page can run them every second and tests can run them on plain values.
import { inLanguage, nowAndNext, shown } from "/static/feed-client.js";

// The venue's calendar day of a session: its ISO start carries the venue's offset at that
// instant (the server wrote it in the venue's zone), so its date is the venue's, wherever the
// phone is and whatever tz data it has.
export function venueDate(iso) {
  return typeof iso === "string" ? iso.slice(0, 10) : "";
}

export function days(sessions) {
  return [...new Set(sessions.map((s) => venueDate(s.start)).filter(Boolean))].sort();
}

// Text as search compares it: no case, no accents, no Arabic short vowels or tatweel, one
// form per character (NFKD), so "ecole" finds "École" and "المدينة" finds "المَدينة".
export function folded(text) {
  return String(text || "").normalize("NFKD").replace(/[\p{M}\u0640]/gu, "").toLowerCase();
}

function allTexts(one, many) {
  const texts = many && typeof many === "object" ? Object.values(many) : [];
  return [one, ...texts].filter((t) => typeof t === "string");
}

// What a search reads of a session: every language of its title, abstract and track, its
// subtitle, speakers and room names. Built once per program, not per keystroke.
export function haystack(session, room) {
  return folded([
    ...allTexts(session.title, session.titles), session.subtitle,
    ...allTexts(session.abstract, session.abstracts), ...allTexts(session.track, session.tracks),
    ...(session.speakers || []), ...allTexts(room?.name, room?.names),
  ].filter(Boolean).join("\n"));
}

// Whether a folded haystack holds every word of the query, in any order.
export function matches(hay, query) {
  const words = folded(query).split(/\s+/).filter(Boolean);
  return words.every((word) => hay.includes(word));
}

const MINUTE = 60_000;
// Operator statuses that say something about one session, when they name it or, about the
// room, when that session is the one on now.
const ABOUT_SESSION = new Set(["starting", "live", "full", "ended", "cancelled", "moved"]);

// What is true of `session` at `nowMs` given its room's state (from the feed), as one object:
// - startMs, endMs: its times with the room's delay applied (the room runs that late), unless
//   it is over; scheduledStartMs, scheduledEndMs: as printed;
// - phase: "over", "on" (under way) or "later";
// - delay: minutes late (0 when none, or once over);
// - status: the operator's status about it: said of this session, until it is over; said of
//   the room, for the session on now while it holds (feed-client.js shown); one of starting,
//   live, full, ended, cancelled or moved, else null; movedTo with moved.
export function sessionNow(session, state, nowMs, outcome = shown(state, nowMs)) {
  const scheduledStartMs = Date.parse(session.start);
  const scheduledEndMs = Date.parse(session.end);
  const delay = Number.isInteger(state?.delay) ? state.delay : 0;
  let startMs = scheduledStartMs + delay * MINUTE;
  let endMs = scheduledEndMs + delay * MINUTE;
  let late = delay;
  if (endMs <= nowMs) {
    startMs = scheduledStartMs;
    endMs = scheduledEndMs;
    late = 0;
  }
  const phase = endMs <= nowMs ? "over" : startMs <= nowMs ? "on" : "later";
  let status = null;
  const said = typeof state?.status === "string" ? state.status : null;
  const roomSessions = Array.isArray(state?.sessions) ? state.sessions : [];
  if (said && state.session === session.id) {
    // Said of this very session: true of it until it is over, even while another one is on
    // (the door shows the one on now; the program shows each session's own news).
    if (ABOUT_SESSION.has(said) && phase !== "over") status = said;
  } else if (outcome.source === "operator" && ABOUT_SESSION.has(outcome.status)
    && !roomSessions.some((s) => s.id === outcome.session) && phase === "on") {
    status = outcome.status; // said of the room: true of the session on now, while it holds
  }
  const movedTo = status === "moved" ? state.moved_to || null : null;
  return { scheduledStartMs, scheduledEndMs, startMs, endMs, phase, delay: late, status, movedTo };
}

// The last import's changes per session, newest last; `venue.changes` keeps the last 50.
export function changesBySession(changes) {
  const by = new Map();
  for (const change of Array.isArray(changes) ? changes : []) {
    if (!change || typeof change.session !== "string") continue;
    if (!by.has(change.session)) by.set(change.session, []);
    by.get(change.session).push(change);
  }
  return by;
}

// A change's identity, to remember it as seen on this phone.
export function changeKey(change) {
  return JSON.stringify([change.kind, change.session, change.room, change.old_room,
    change.title, change.detail || {}]);
}

// Favourites that overlap in time (with the delays that hold now): `sessions` are program
// sessions, `when(s)` gives {startMs, endMs}. Returns session id -> the ids it clashes with.
export function clashes(sessions, when) {
  const placed = sessions.map((s) => ({ s, ...when(s) }))
    .sort((a, b) => a.startMs - b.startMs || a.endMs - b.endMs);
  const found = new Map();
  for (let i = 0; i < placed.length; i += 1) {
    for (let j = i + 1; j < placed.length && placed[j].startMs < placed[i].endMs; j += 1) {
      if (placed[j].endMs <= placed[j].startMs || placed[i].endMs <= placed[i].startMs) continue;
      for (const [a, b] of [[placed[i], placed[j]], [placed[j], placed[i]]]) {
        if (!found.has(a.s.id)) found.set(a.s.id, []);
        found.get(a.s.id).push(b.s.id);
      }
    }
  }
  return found;
}

// What its owner would want to hear about a favourite: where and when it is, whether it is
// cancelled, moved or full, and how late its room runs. Time passing changes none of it;
// an operator or a new import does. Compared with the one its owner last saw.
export function favouriteFacts(session, live) {
  if (!session) return { gone: true };
  return {
    room: session.room, start: session.start, end: session.end, title: session.title,
    status: ["cancelled", "moved", "full"].includes(live.status) ? live.status : null,
    moved_to: live.movedTo, delay: live.phase === "over" ? 0 : live.delay,
  };
}

// What differs between two facts, as a list of kinds the page words: moved (another room, or an
// operator's move), retimed, retitled, cancelled, full, late.
export function factChanges(before, after) {
  if (!before) return [];
  if (after.gone) return before.gone ? [] : ["cancelled"];
  const kinds = [];
  if (after.status === "cancelled" && before.status !== "cancelled") kinds.push("cancelled");
  if (after.room !== before.room || (after.status === "moved"
    && (before.status !== "moved" || before.moved_to !== after.moved_to))) kinds.push("moved");
  if (after.start !== before.start || after.end !== before.end) kinds.push("retimed");
  if (after.title !== before.title) kinds.push("retitled");
  if (after.status === "full" && before.status !== "full") kinds.push("full");
  if (after.delay !== before.delay && after.delay > 0) kinds.push("late");
  return kinds;
}

// The session on now in each room and the next, with delays: the rooms' own view (nowAndNext).
export function roomNowAndNext(state, nowMs) {
  return nowAndNext(state.sessions, nowMs, state.delay);
}

// A session's title in the reader's language.
export function titleOf(session, lang) {
  const titles = session.titles && Object.keys(session.titles).length ? session.titles : null;
  return inLanguage(titles || session.title, lang);
}

export function abstractOf(session, lang) {
  const abstracts = session.abstracts && Object.keys(session.abstracts).length
    ? session.abstracts : null;
  return inLanguage(abstracts || session.abstract, lang);
}
