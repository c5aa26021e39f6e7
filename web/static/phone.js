// The attendees' page for phones: /. Every room's now and next, live; filters by track and
// language; favourite sessions kept on the phone (no account); the announcements; what changed
// (delays, moves, cancellations). Works offline with the last state it saw.
import { FeedClient, inLanguage, nowAndNext, pageOptions, shown } from "/static/feed-client.js";
import { chooseLanguage, setLanguage, t as base } from "/static/i18n.js";
import {
  $, announcementItems, bdi, clockText, connectionBanner, el, emergencyOverlay, guarded,
  keyed, knowRooms, languageButtons, ltr, minutes, roomHeading, roomName, sessionMeta, sessionTitle,
  setText, statusText,
} from "/static/ui.js";

// Operator statuses that stop the session on now: its row says so instead of the time left.
const NOT_ON = new Set(["ended", "cancelled", "moved"]);
// Operator statuses the "what changed" list reports, while they hold.
const NEWS = new Set(["delayed", "cancelled", "moved"]);

const TEXT = {
  en: { all_tracks: "All tracks", all_languages: "All languages", track: "Track",
    language: "Language", favourites: "My favourites only", changes: "What changed",
    favourite: "Favourite", new: "New", cancelled: "Cancelled", moved: "Moved",
    retimed: "New time", retitled: "New title", nothing: "Nothing to show" },
  fr: { all_tracks: "Tous les thèmes", all_languages: "Toutes les langues", track: "Thème",
    language: "Langue", favourites: "Mes favoris seulement", changes: "Ce qui a changé",
    favourite: "Favori", new: "Nouveau", cancelled: "Annulé", moved: "Déplacé",
    retimed: "Nouvel horaire", retitled: "Nouveau titre", nothing: "Rien à afficher" },
  ar: { all_tracks: "كل المحاور", all_languages: "كل اللغات", track: "المحور",
    language: "اللغة", favourites: "المفضلة فقط", changes: "ما الذي تغير",
    favourite: "مفضلة", new: "جديد", cancelled: "ألغي", moved: "نقل",
    retimed: "موعد جديد", retitled: "عنوان جديد", nothing: "لا شيء للعرض" },
};

let lang = chooseLanguage();
let feed = null;
let program = { conference: null, rooms: [], sessions: [] };
const favourites = new Set(readFavourites());

function readFavourites() {
  try {
    const saved = JSON.parse(localStorage.getItem("feed-favourites") || "[]");
    return Array.isArray(saved) ? saved : [];
  } catch {
    return [];
  }
}

function tr(key, values = {}) {
  return TEXT[lang]?.[key] ?? TEXT.en[key] ?? base(lang, key, values);
}

function star(session) {
  const on = favourites.has(session.id);
  const button = el("button", on ? "★" : "☆", {
    type: "button", class: "star", "aria-pressed": String(on), "aria-label": tr("favourite"),
    "data-session": session.id,
  });
  button.addEventListener("click", () => {
    if (favourites.has(session.id)) favourites.delete(session.id);
    else favourites.add(session.id);
    localStorage.setItem("feed-favourites", JSON.stringify([...favourites]));
    render();
  });
  return button;
}

function wanted(session) {
  const track = $("track").value;
  const language = $("language").value;
  if (track && session.track !== track) return false;
  if (language && session.language !== language) return false;
  if ($("favourites-only").checked && !favourites.has(session.id)) return false;
  return true;
}

function sessionRow(session, label, whenText) {
  const row = el("div", null, { class: "session" });
  row.append(star(session));
  const text = el("div");
  text.append(el("p", label, { class: "label" }));
  const title = el("p", null, { class: "title" });
  title.append(bdi(sessionTitle(session, lang)));
  text.append(title, sessionMeta(session, whenText, { language: false }));
  row.append(text);
  return row;
}

function roomCard(room, now) {
  const state = feed.state(`room:${room.id}`);
  const time = (ms) => clockText(feed, lang, ms);
  const { now: current, next } = nowAndNext(state.sessions, now, state.delay);
  const listed = [current, next].filter((s) => s && wanted(s));
  const filtering = $("track").value || $("language").value || $("favourites-only").checked;
  if (filtering && !listed.length) return null;
  const card = el("article", null, { class: "card", "data-room": room.id });
  card.append(roomHeading(roomName(state.name ? state : room, lang, room.id), state, lang, feed));
  if (current && wanted(current)) {
    const outcome = shown(state, now);
    const stopped = outcome.source === "operator" && outcome.session === current.id
      && NOT_ON.has(outcome.status);
    card.append(sessionRow(current, base(lang, "now"), stopped ? statusText(state, lang)
      : base(lang, "left_min", { n: minutes(current.endMs - now) })));
  }
  if (next && wanted(next)) {
    card.append(sessionRow(next, base(lang, "next"),
      `${ltr(time(next.startMs))} · ${base(lang, "in_min", { n: minutes(next.startMs - now) })}`));
  }
  return card;
}

function changeItems(now) {
  const items = [];
  for (const room of program.rooms) {
    const state = feed.state(`room:${room.id}`);
    // Only while the status holds: a delay of a session long over is no news.
    const outcome = shown(state, now);
    if (outcome.source === "operator" && NEWS.has(outcome.status)) {
      const item = el("li");
      item.append(el("span", statusText(state, lang), { class: "kind" }), " ",
        bdi(roomName(state.name ? state : room, lang, room.id)));
      items.push(item);
    }
  }
  for (const change of [...(feed.state("venue").changes || [])].reverse()) {
    const item = el("li");
    item.append(el("span", tr(change.kind), { class: "kind" }), " ", bdi(change.title));
    items.push(item);
  }
  return items.length ? items : [el("li", tr("nothing"), { class: "empty" })];
}

function options(select, values, allLabel) {
  const chosen = select.value;
  select.replaceChildren(el("option", allLabel, { value: "" }),
    ...values.map((v) => el("option", v, { value: v })));
  select.value = values.includes(chosen) ? chosen : "";
}

function render() {
  if (!feed) return;
  const now = feed.now();
  const venue = feed.state("venue");
  if (venue.schedule?.etag && venue.schedule.etag !== program.etag) reloadForProgram();
  guarded(
    () => connectionBanner($("connection"), feed, lang),
    () => setText($("clock"), clockText(feed, lang, now)),
    () => {
      const title = program.conference?.title || location.host;
      document.title = title;
      keyed($("conference"), title, () => [bdi(title)]);
      setText($("track-label"), tr("track"));
      setText($("language-label"), tr("language"));
      setText($("favourites-label"), tr("favourites"));
    },
    () => {
      const cards = program.rooms.map((room) => roomCard(room, now)).filter(Boolean);
      const key = JSON.stringify([lang, [...favourites], cards.map((c) => c.textContent)]);
      keyed($("rooms"), key,
        () => (cards.length ? cards : [el("p", tr("nothing"), { class: "empty" })]));
    },
    () => {
      const notes = feed.announcements(["venue"]).filter((a) => a.priority !== "emergency");
      const emergency = feed.announcements(["venue", ...program.rooms.map((r) => `room:${r.id}`)])
        .find((a) => a.priority === "emergency");
      setText($("announcements-label"), base(lang, "announcements"));
      keyed($("announcements"), JSON.stringify([lang, notes.map((a) => [a.id, a.text])]),
        () => announcementItems(notes, lang));
      $("announcements").parentElement.hidden = !notes.length;
      emergencyOverlay($("emergency"), emergency, lang);
    },
    () => {
      setText($("changes-label"), tr("changes"));
      const items = changeItems(now);
      keyed($("changes"), JSON.stringify([lang, items.map((i) => i.textContent)]), () => items);
    },
  );
}

function reloadForProgram() {
  const last = Number(sessionStorage.getItem("feed-reloaded") || 0);
  if (Date.now() - last > 60_000) {
    sessionStorage.setItem("feed-reloaded", String(Date.now()));
    location.reload();
  }
}

async function loadProgram() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const answer = await fetch("/api/schedule", { signal: AbortSignal.timeout(5000) });
      if (answer.ok) {
        const loaded = await answer.json();
        loaded.etag = (answer.headers.get("ETag") || "").replaceAll('"', "") || null;
        knowRooms(loaded.rooms);
        return loaded;
      }
      if (answer.status === 404) return { conference: null, rooms: [], sessions: [], etag: null };
    } catch {
      // offline, or the server is failing: fall back below
    }
    const saved = savedProgram();
    if (saved) return saved;
    $("connection").hidden = false;
    setText($("connection"), base(lang, "offline", { t: "" }).replace(/\s*:.*$/, ""));
    await new Promise((done) => setTimeout(done, Math.min(10_000, 500 * 2 ** attempt)));
  }
}

function savedProgram() {
  try {
    return JSON.parse(localStorage.getItem("feed-program") || "null");
  } catch {
    return null;
  }
}

async function start() {
  setLanguage(lang);
  languageButtons($("languages"), lang, (chosen) => {
    lang = chosen;
    filters();
    render();
  });
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
  program = await loadProgram();
  try {
    localStorage.setItem("feed-program", JSON.stringify(program));
  } catch {
    // no room on this phone: it only means no program offline next time
  }
  filters();
  feed = new FeedClient(["venue", ...program.rooms.map((r) => `room:${r.id}`)],
    { persist: "feed-phone", ...pageOptions("phone") });
  feed.addEventListener("change", render);
  feed.addEventListener("connection", render);
  feed.start();
  $("filters").addEventListener("change", render);
  render();
  setInterval(render, 1000);
}

function filters() {
  const unique = (key) => [...new Set(program.sessions.map((s) => s[key]).filter(Boolean))].sort();
  options($("track"), unique("track"), tr("all_tracks"));
  options($("language"), unique("language"), tr("all_languages"));
}

start();
