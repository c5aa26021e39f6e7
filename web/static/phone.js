// The attendees' page for phones: /. The whole program, searchable across every day, with what
// is true of each session now (on now, starting, running late and its new times, full, moved,
// cancelled, changed by the last import); favourites kept on the phone, "my day" with its
// clashes, and any change to a favourite at the top when the page opens or comes back online.
// The program comes from GET /api/schedule, kept in the phone's cache with its ETag, and is
// fetched again only when the feed's `venue` channel says a new version exists; statuses and
// announcements come through the feed. Works offline with the last state it saw.
import { FeedClient, inLanguage, nowAndNext, pageOptions, shown } from "/static/feed-client.js";
import { chooseLanguage, fill, locale, setLanguage, t as base } from "/static/i18n.js";
import {
  abstractOf, changeKey, changesBySession, clashes, days, factChanges, favouriteFacts, haystack,
  matches, sessionNow, titleOf, venueDate,
} from "/static/program.js";
import {
  $, announcementItems, bdi, clockText, connectionBanner, el, emergencyOverlay, guarded,
  keyed, knowRooms, languageButtons, ltr, minutes, roomHeading, roomName, sessionMeta, sessionTitle,
  setText, statusText, trackColour, trackName,
} from "/static/ui.js";

// Operator statuses that stop the session on now: its row says so instead of the time left.
const NOT_ON = new Set(["ended", "cancelled", "moved"]);
// Operator statuses the "what changed" list reports, while they hold.
const NEWS = new Set(["delayed", "cancelled", "moved"]);
// Where the program is kept on the phone, with its ETag: the same storage the service worker
// uses for the page's files (sw.js leaves this cache alone when it updates itself).
const PROGRAM_CACHE = "feed-program";
const PROGRAM_URL = "/api/schedule";

const TEXT = {
  en: { all_tracks: "All tracks", all_languages: "All languages", track: "Track",
    language: "Language", favourites: "My favourites only", changes: "What changed",
    favourite: "Favourite", new: "New", cancelled: "Cancelled", moved: "Moved",
    retimed: "New time", retitled: "New title", nothing: "Nothing to show",
    search: "Search the program", day: "Day", room: "Room", all_rooms: "All rooms",
    program: "Program", my_day: "My day", views: "Show", rooms_now: "Now in the rooms",
    results: { one: "{n} session", other: "{n} sessions" }, every_day: "every day",
    alerts: "Your favourites changed", alerts_seen: "Got it", changes_seen: "Mark all as seen",
    details: "Details", add_calendar: "Add to my calendar",
    add_day_calendar: "Add my day to my calendar", clash: "Same time as {title}",
    no_favourites: "No favourites on this day: tap ☆ beside a session.", over: "Over",
    scheduled: "planned {t}", was: "was {t}", from_room: "from {room}", late: "Running late",
    full: "Room full", favourites_calendar: "My favourites" },
  fr: { all_tracks: "Tous les thèmes", all_languages: "Toutes les langues", track: "Thème",
    language: "Langue", favourites: "Mes favoris seulement", changes: "Ce qui a changé",
    favourite: "Favori", new: "Nouveau", cancelled: "Annulé", moved: "Déplacé",
    retimed: "Nouvel horaire", retitled: "Nouveau titre", nothing: "Rien à afficher",
    search: "Rechercher dans le programme", day: "Jour", room: "Salle",
    all_rooms: "Toutes les salles", program: "Programme", my_day: "Ma journée",
    views: "Afficher", rooms_now: "En ce moment dans les salles",
    results: { one: "{n} session", other: "{n} sessions" }, every_day: "tous les jours",
    alerts: "Vos favoris ont changé", alerts_seen: "Compris",
    changes_seen: "Tout marquer comme vu", details: "Détails",
    add_calendar: "Ajouter à mon agenda", add_day_calendar: "Ajouter ma journée à mon agenda",
    clash: "En même temps que {title}",
    no_favourites: "Aucun favori ce jour-là : touchez ☆ à côté d'une session.",
    over: "Terminé", scheduled: "prévu {t}", was: "avant {t}", from_room: "depuis {room}",
    late: "En retard", full: "Salle complète", favourites_calendar: "Mes favoris" },
  ar: { all_tracks: "كل المحاور", all_languages: "كل اللغات", track: "المحور",
    language: "اللغة", favourites: "المفضلة فقط", changes: "ما الذي تغير",
    favourite: "مفضلة", new: "جديد", cancelled: "ألغي", moved: "نقل",
    retimed: "موعد جديد", retitled: "عنوان جديد", nothing: "لا شيء للعرض",
    search: "ابحث في البرنامج", day: "اليوم", room: "القاعة", all_rooms: "كل القاعات",
    program: "البرنامج", my_day: "يومي", views: "عرض", rooms_now: "الآن في القاعات",
    results: { zero: "لا توجد جلسات", one: "جلسة واحدة", two: "جلستان", few: "{n} جلسات",
      many: "{n} جلسة", other: "{n} جلسة" }, every_day: "كل الأيام",
    alerts: "تغييرات في مفضلتك", alerts_seen: "فهمت", changes_seen: "تعليم الكل كمقروء",
    details: "التفاصيل", add_calendar: "أضف إلى التقويم", add_day_calendar: "أضف يومي إلى التقويم",
    clash: "في نفس وقت {title}", no_favourites: "لا مفضلة في هذا اليوم: اضغط ☆ بجانب جلسة.",
    over: "انتهت", scheduled: "المقرر {t}", was: "سابقا {t}", from_room: "من {room}",
    late: "متأخرة", full: "القاعة ممتلئة", favourites_calendar: "مفضلتي" },
};

let lang = chooseLanguage();
let feed = null;
let program = { conference: null, rooms: [], sessions: [], etag: null };
let index = { rooms: new Map(), sessions: new Map(), hay: new Map(), days: [] };
let view = sessionStorage.getItem("feed-phone-view") === "myday" ? "myday" : "program";
let day = null; // the venue day shown, "YYYY-MM-DD"
let fetching = null;
const favourites = new Set(stored("feed-favourites", []));
// What the owner last saw of each favourite (program.js favouriteFacts), and the import
// changes they have seen: both stay on the phone.
const seenFacts = stored("feed-favourite-facts", {});
const seenChanges = new Set(stored("feed-seen-changes", []));
const spoken = new Set(); // announcements already said to screen readers
const rows = new Map(); // session id -> its row, built once per language and program

function stored(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || "null");
    return value !== null && typeof value === typeof fallback
      && Array.isArray(value) === Array.isArray(fallback) ? value : fallback;
  } catch {
    return fallback;
  }
}

function keep(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // no room on this phone: it only means this is forgotten next time
  }
}

function tr(key, values = {}) {
  const text = TEXT[lang]?.[key] ?? TEXT.en[key];
  return text === undefined ? base(lang, key, values) : fill(text, lang, values);
}

function time(ms) {
  return ltr(clockText(feed, lang, ms));
}

// "10:00–10:45", kept left to right as a whole inside Arabic.
function span(startMs, endMs) {
  return ltr(`${clockText(feed, lang, startMs)}\u2013${clockText(feed, lang, endMs)}`);
}

// ---- the program: cached with its ETag, fetched when the feed says there is a new one -------

function indexed(loaded) {
  const rooms = new Map((loaded.rooms || []).map((r) => [r.id, r]));
  const sessions = new Map((loaded.sessions || []).map((s) => [s.id, s]));
  const hay = new Map((loaded.sessions || []).map((s) => [s.id, haystack(s, rooms.get(s.room))]));
  return { rooms, sessions, hay, days: days(loaded.sessions || []) };
}

function useProgram(loaded) {
  const roomsBefore = program.rooms.map((r) => r.id).join(",");
  program = loaded;
  index = indexed(loaded);
  knowRooms(loaded.rooms);
  rows.clear();
  filters();
  // A new program with other rooms: the feed follows a fixed set of channels, so start again
  // (at most once a minute, in case the server keeps changing its mind).
  if (feed && roomsBefore !== program.rooms.map((r) => r.id).join(",")) {
    const last = Number(sessionStorage.getItem("feed-reloaded") || 0);
    if (Date.now() - last > 60_000) {
      sessionStorage.setItem("feed-reloaded", String(Date.now()));
      location.reload();
    }
  }
}

function etagOf(answer) {
  return (answer.headers.get("ETag") || "").replace(/^W\//, "").replaceAll('"', "") || null;
}

async function cachedProgram() {
  try {
    const hit = await (await caches.open(PROGRAM_CACHE)).match(PROGRAM_URL);
    if (hit) return { ...(await hit.json()), etag: etagOf(hit) };
  } catch {
    // no Cache Storage (a private window, an old browser): the network alone, then
  }
  return null;
}

// GET /api/schedule, conditional on the ETag held: 304 keeps what the phone has. Returns the
// new program, the empty one when none is imported, or null (unchanged, or unreachable).
async function fetchProgram() {
  const headers = program.etag ? { "If-None-Match": `"${program.etag}"` } : {};
  const answer = await fetch(PROGRAM_URL, { headers, cache: "no-store" });
  if (answer.status === 304) return null;
  if (answer.status === 404) return { conference: null, rooms: [], sessions: [], etag: null };
  if (!answer.ok) throw new Error(`GET ${PROGRAM_URL}: ${answer.status}`);
  const copy = answer.clone();
  const loaded = { ...(await answer.json()), etag: etagOf(answer) };
  try {
    await (await caches.open(PROGRAM_CACHE)).put(PROGRAM_URL, copy);
  } catch {
    // not kept for offline: the page still works now
  }
  return loaded;
}

// Fetch the program once now, retrying with backoff while it cannot be reached.
function refreshProgram() {
  if (fetching) return fetching;
  fetching = (async () => {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const loaded = await fetchProgram();
        if (loaded) useProgram(loaded);
        return;
      } catch {
        if (program.sessions.length) return; // the phone's copy serves until the feed says more
        await new Promise((done) => setTimeout(done, Math.min(10_000, 500 * 2 ** attempt)));
      }
    }
  })().finally(() => {
    fetching = null;
    render();
  });
  return fetching;
}

// ---- what the reader chose ----------------------------------------------------------------

function query() {
  return $("search").value.trim();
}

function filtered(session, { ignoreDay = false } = {}) {
  const room = $("room").value;
  const track = $("track").value;
  const language = $("language").value;
  if (room && session.room !== room) return false;
  if (track && session.track !== track) return false;
  if (language && session.language !== language) return false;
  if ($("favourites-only").checked && !favourites.has(session.id)) return false;
  if (!ignoreDay && venueDate(session.start) !== day) return false;
  return true;
}

// The venue's date now, from the server's offsets (never the phone's zone).
function venueToday(now) {
  const offset = feed?.venueOffset(now) ?? 0;
  return new Date(now + offset * 60_000).toISOString().slice(0, 10);
}

function defaultDay(now) {
  const today = venueToday(now);
  return index.days.find((d) => d >= today) || index.days.at(-1) || null;
}

function dayText(date, style = "short") {
  const [y, m, d] = date.split("-").map(Number);
  const options = style === "short" ? { weekday: "short", day: "numeric", month: "short" }
    : { weekday: "long", day: "numeric", month: "long" };
  return new Intl.DateTimeFormat(locale(lang), { ...options, timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, d)));
}

function options(select, values, allLabel, label = (v) => v) {
  const chosen = select.value;
  select.replaceChildren(el("option", allLabel, { value: "" }),
    ...values.map((v) => el("option", label(v), { value: v })));
  select.value = values.includes(chosen) ? chosen : "";
}

function filters() {
  const unique = (key) => [...new Set(program.sessions.map((s) => s[key]).filter(Boolean))].sort();
  const trackNames = new Map(program.sessions.filter((s) => s.track)
    .map((s) => [s.track, trackName(s, lang)]));
  options($("room"), program.rooms.map((r) => r.id), tr("all_rooms"),
    (id) => roomName(index.rooms.get(id), lang, id));
  options($("track"), unique("track"), tr("all_tracks"), (v) => trackNames.get(v) || v);
  options($("language"), unique("language"), tr("all_languages"), (v) => v.toUpperCase());
  if (!index.days.includes(day)) day = null;
}

// ---- one session's row ----------------------------------------------------------------------

function roomState(roomId) {
  return feed ? feed.state(`room:${roomId}`) : { status: null, delay: 0, sessions: [] };
}

function toggleFavourite(id) {
  if (favourites.has(id)) {
    favourites.delete(id);
    delete seenFacts[id];
  } else {
    favourites.add(id);
    const session = index.sessions.get(id);
    if (session) seenFacts[id] = favouriteFacts(session, liveOf(session, feed ? feed.now() : Date.now()));
  }
  keep("feed-favourites", [...favourites]);
  keep("feed-favourite-facts", seenFacts);
  render();
}

function calendarHref(ids, name) {
  const params = new URLSearchParams(ids.map((id) => ["session", id]));
  params.set("name", name);
  return `/api/calendar.ics?${params}`;
}

function buildRow(session) {
  const title = titleOf(session, lang);
  const node = el("li", null, { class: "session", "data-session": session.id });
  const when = el("p", null, { class: "when" });
  const body = el("div", null, { class: "body" });
  const heading = el("h3", null, { class: "title" });
  heading.append(bdi(title));
  const meta = el("p", null, { class: "meta" });
  meta.append(el("span", null, { class: "where" }));
  meta.lastChild.append(bdi(roomName(index.rooms.get(session.room), lang, session.room)));
  if (session.speakers?.length) meta.append(bdi(session.speakers.join(", ")));
  if (session.track) {
    const track = el("span", null, { class: "track" });
    track.style.setProperty("--track", trackColour(session.track));
    track.append(bdi(trackName(session, lang)));
    meta.append(track);
  }
  if (session.language) meta.append(el("span", session.language, { class: "lang" }));
  const live = el("p", null, { class: "live" });
  const marks = el("p", null, { class: "marks" });
  const clash = el("p", null, { class: "clash" });
  const details = el("details");
  details.append(el("summary", tr("details")));
  details.addEventListener("toggle", () => {
    if (!details.open) return;
    if (details.childElementCount === 1) { // filled when first opened: 1,000 abstracts wait
      if (session.subtitle) details.append(el("p", session.subtitle, { class: "subtitle" }));
      const abstract = abstractOf(session, lang);
      if (abstract) details.append(el("p", abstract, { class: "abstract" }));
      const link = el("a", tr("add_calendar"), {
        href: calendarHref([session.id], title.slice(0, 100)), download: `${session.id}.ics`,
      });
      details.append(el("p", null, { class: "calendar-line" }));
      details.lastChild.append(link);
    }
    seeChanges(session.id); // opened: its changes are seen
  });
  body.append(heading, meta, live, marks, clash, details);
  const star = el("button", null, {
    type: "button", class: "star", "aria-pressed": "false",
    "aria-label": `${tr("favourite")}: ${title}`,
  });
  star.addEventListener("click", () => toggleFavourite(session.id));
  node.append(when, body, star);
  const row = { node, when, live, marks, clash, star, key: "" };
  rows.set(session.id, row);
  return row;
}

function liveOf(session, now) {
  return sessionNow(session, roomState(session.room), now);
}

// What the session's line says now: the operator's word while it holds, else where it stands
// in time; and a room running late, with its new times.
function liveText(live, now) {
  const parts = [];
  if (live.status === "cancelled") parts.push(base(lang, "status_cancelled"));
  else if (live.status === "moved") {
    parts.push(base(lang, "status_moved", { room: roomName(index.rooms.get(live.movedTo), lang,
      live.movedTo || "") }));
  } else if (live.phase === "over") parts.push(tr("over"));
  else {
    if (live.status === "full") parts.push(base(lang, "status_full"));
    if (live.status === "ended") parts.push(base(lang, "status_ended"));
    else if (live.phase === "on") {
      parts.push(base(lang, "shown_on"), base(lang, "left_min", { n: minutes(live.endMs - now) }));
    } else if (live.status === "starting") parts.push(base(lang, "status_starting"));
    else if (live.startMs - now <= 60 * 60_000) {
      parts.push(base(lang, "in_min", { n: minutes(live.startMs - now) }));
    }
    if (live.delay > 0) parts.push(base(lang, "status_delayed", { n: live.delay }));
  }
  return parts.join(" · ");
}

function stateOf(live) {
  if (live.status === "cancelled" || live.status === "moved") return live.status;
  if (live.phase === "over") return "over";
  if (live.status === "full") return "full";
  if (live.delay > 0) return "late";
  return live.phase;
}

function markText(change) {
  const detail = change.detail || {};
  if (change.kind === "moved" && change.old_room) {
    return `${tr("moved")} · ${tr("from_room", {
      room: roomName(index.rooms.get(change.old_room), lang, change.old_room) })}`;
  }
  if (change.kind === "retimed" && detail.old_start) {
    return `${tr("retimed")} · ${tr("was", { t: time(Date.parse(detail.old_start)) })}`;
  }
  return tr(change.kind);
}

function updateRow(row, session, now, changes, clashWith) {
  const live = liveOf(session, now);
  const timesText = span(live.startMs, live.endMs);
  const late = live.delay > 0 && live.phase !== "over";
  const unseen = (changes.get(session.id) || []).filter((c) => !seenChanges.has(changeKey(c)));
  const clashText = (clashWith || []).map((id) => {
    const other = index.sessions.get(id);
    return other ? tr("clash", { title: titleOf(other, lang) }) : "";
  }).filter(Boolean);
  const key = JSON.stringify([timesText, late, liveText(live, now), stateOf(live),
    favourites.has(session.id), unseen.map(changeKey), clashText]);
  if (row.key === key) return;
  row.key = key;
  row.node.dataset.state = stateOf(live);
  keyed(row.when, timesText + late, () => [
    el("span", timesText, { class: "times" }),
    ...(late ? [el("span", tr("scheduled", {
      t: span(live.scheduledStartMs, live.scheduledEndMs) }), { class: "planned" })]
      : []),
  ]);
  setText(row.live, liveText(live, now));
  row.live.hidden = !row.live.textContent;
  keyed(row.marks, JSON.stringify(unseen.map(changeKey)),
    () => unseen.map((c) => el("span", markText(c), { class: "mark", "data-kind": c.kind })));
  row.marks.hidden = !unseen.length;
  setText(row.clash, clashText.join(" · "));
  row.clash.hidden = !clashText.length;
  const on = favourites.has(session.id);
  row.star.setAttribute("aria-pressed", String(on));
  setText(row.star, on ? "★" : "☆");
  row.node.classList.toggle("favourite", on);
}

function seeChanges(sessionId) {
  const changes = changesBySession(feed?.state("venue").changes).get(sessionId) || [];
  let more = false;
  for (const c of changes) {
    const key = changeKey(c);
    if (!seenChanges.has(key)) {
      seenChanges.add(key);
      more = true;
    }
  }
  if (!more) return;
  keep("feed-seen-changes", [...seenChanges].slice(-500));
  render();
}

// ---- the listing: the day's program, the search across every day, or "my day" -------------

function bySessionTime(a, b) {
  return Date.parse(a.start) - Date.parse(b.start) || Date.parse(a.end) - Date.parse(b.end)
    || program.rooms.findIndex((r) => r.id === a.room) - program.rooms.findIndex((r) => r.id === b.room);
}

function listing(now) {
  const changes = changesBySession(feed?.state("venue").changes);
  const searching = query() !== "";
  let chosen;
  let found = null;
  if (view === "myday") {
    chosen = program.sessions.filter((s) => favourites.has(s.id) && venueDate(s.start) === day);
    const when = (s) => {
      const live = liveOf(s, now);
      return { startMs: live.startMs, endMs: live.endMs };
    };
    found = clashes(chosen.filter((s) => !["cancelled", "moved"].includes(liveOf(s, now).status)),
      when);
  } else if (searching) {
    chosen = program.sessions.filter((s) => filtered(s, { ignoreDay: true })
      && matches(index.hay.get(s.id), query()));
  } else {
    chosen = program.sessions.filter((s) => filtered(s));
  }
  chosen.sort(bySessionTime);
  const groups = [];
  for (const s of chosen) {
    const date = venueDate(s.start);
    if (!groups.length || groups.at(-1).date !== date) groups.push({ date, sessions: [] });
    groups.at(-1).sessions.push(s);
  }
  // Rows are built once and moved, not rebuilt: a star keeps its focus, details stay open.
  const containers = () => groups.map((g) => {
    const list = el("ul", null, { class: "sessions" });
    list.append(...g.sessions.map((s) => (rows.get(s.id) || buildRow(s)).node));
    return searching && view !== "myday" ? [el("h3", dayText(g.date, "long"), { class: "day" }), list]
      : [list];
  }).flat();
  const ids = chosen.map((s) => s.id);
  keyed($("program"), JSON.stringify([lang, view, searching, ids, program.etag]), () => (ids.length
    ? containers()
    : [el("p", view === "myday" ? tr("no_favourites") : tr("nothing"), { class: "empty" })]));
  for (const s of chosen) updateRow(rows.get(s.id) || buildRow(s), s, now, changes, found?.get(s.id));
  const count = tr("results", { n: chosen.length });
  setText($("count"), searching && view !== "myday" ? `${count} · ${tr("every_day")}` : count);
  setText($("listing-label"), view === "myday" && day ? `${tr("my_day")} · ${dayText(day, "long")}`
    : tr(view === "myday" ? "my_day" : "program"));
  const line = $("calendar-line");
  line.hidden = !(view === "myday" && ids.length);
  if (!line.hidden) {
    const link = $("calendar-link");
    setText(link, tr("add_day_calendar"));
    link.href = calendarHref(ids, `${tr("my_day")} ${day}`);
    link.setAttribute("download", `${day}.ics`);
  }
}

function dayButtons(now) {
  day ||= defaultDay(now);
  const box = $("days");
  box.setAttribute("aria-label", tr("day"));
  keyed(box, JSON.stringify([lang, index.days, day]), () => index.days.map((d) => {
    const button = el("button", dayText(d), { type: "button", "aria-pressed": String(d === day),
      "data-day": d });
    button.addEventListener("click", () => {
      day = d;
      render();
      $(`days`).querySelector(`[data-day="${d}"]`)?.focus();
    });
    return button;
  }));
}

function viewButtons() {
  const box = $("views");
  box.setAttribute("aria-label", tr("views"));
  keyed(box, JSON.stringify([lang, view]), () => [["program", tr("program")],
    ["myday", tr("my_day")]].map(([name, label]) => {
    const button = el("button", label, { type: "button", "aria-pressed": String(view === name),
      "data-view": name });
    button.addEventListener("click", () => {
      view = name;
      sessionStorage.setItem("feed-phone-view", view);
      render();
      $("views").querySelector(`[data-view="${name}"]`)?.focus();
    });
    return button;
  }));
}

// ---- favourites that changed since their owner looked: at the top -------------------------

function favouriteAlerts(now) {
  if (!program.sessions.length) return []; // nothing to compare with before a program
  const items = [];
  let recorded = false;
  for (const id of favourites) {
    const session = index.sessions.get(id);
    const facts = favouriteFacts(session, session ? liveOf(session, now) : null);
    if (!seenFacts[id]) {
      if (!facts.gone) {
        seenFacts[id] = facts; // a favourite from before facts were kept: from now on
        recorded = true;
      }
      continue;
    }
    const kinds = factChanges(seenFacts[id], facts);
    if (!kinds.length) continue;
    const live = session ? liveOf(session, now) : null;
    const words = kinds.map((kind) => {
      if (kind === "cancelled") return base(lang, "status_cancelled");
      if (kind === "moved") {
        const to = live?.status === "moved" ? live.movedTo : session.room;
        return base(lang, "status_moved", { room: roomName(index.rooms.get(to), lang, to) });
      }
      if (kind === "retimed") return `${tr("retimed")} ${time(live.startMs)}`;
      if (kind === "late") return base(lang, "status_delayed", { n: live.delay });
      if (kind === "full") return base(lang, "status_full");
      return tr(kind);
    });
    const title = session ? titleOf(session, lang) : (seenFacts[id].title || id);
    const item = el("li", null, { "data-session": id });
    item.append(el("strong", null, {}), " ", el("span", words.join(" · "), { class: "what" }));
    item.firstChild.append(bdi(title));
    items.push(item);
  }
  if (recorded) keep("feed-favourite-facts", seenFacts);
  return items;
}

let alertsShown = "";
// Until when news of a favourite is brought to the top: the page just opened or came back
// online, and the events it missed are still arriving.
let revealUntil = 0;

function alerts(now, { reveal = false } = {}) {
  const items = favouriteAlerts(now);
  const box = $("alerts");
  const key = JSON.stringify([lang, items.map((i) => i.textContent)]);
  setText($("alerts-label"), tr("alerts"));
  setText($("alerts-seen"), tr("alerts_seen"));
  keyed($("alerts-list"), key, () => items);
  box.hidden = !items.length;
  // Opened, or back online, with news of a favourite: it comes first, and is said once.
  if (reveal && items.length && key !== alertsShown) {
    alertsShown = key;
    box.scrollIntoView({ block: "start" });
    say(`${tr("alerts")}: ${items.map((i) => i.textContent).join(". ")}`);
  }
}

function alertsSeen() {
  const now = feed ? feed.now() : Date.now();
  for (const id of favourites) {
    const session = index.sessions.get(id);
    if (session) seenFacts[id] = favouriteFacts(session, liveOf(session, now));
    else delete seenFacts[id]; // gone from the program: said, and now forgotten
  }
  keep("feed-favourite-facts", seenFacts);
  render();
  $("search").focus();
}

// ---- the rooms now, and what changed -------------------------------------------------------

function wanted(session) {
  const track = $("track").value;
  const language = $("language").value;
  const room = $("room").value;
  if (track && session.track !== track) return false;
  if (language && session.language !== language) return false;
  if (room && session.room && session.room !== room) return false;
  if ($("favourites-only").checked && !favourites.has(session.id)) return false;
  return true;
}

function sessionRow(session, label, whenText) {
  const row = el("div", null, { class: "session" });
  const text = el("div");
  text.append(el("p", label, { class: "label" }));
  const title = el("p", null, { class: "title" });
  title.append(bdi(sessionTitle(session, lang)));
  text.append(title, sessionMeta(session, whenText, { language: false, lang }));
  row.append(text);
  return row;
}

function roomCard(room, now) {
  const state = roomState(room.id);
  const { now: current, next } = nowAndNext(state.sessions, now, state.delay);
  const visible = [current, next].filter((s) => s && wanted({ ...s, room: room.id }));
  const filtering = $("track").value || $("language").value || $("room").value
    || $("favourites-only").checked;
  if (filtering && !visible.length) return null;
  const card = el("article", null, { class: "card", "data-room": room.id });
  card.append(roomHeading(roomName(state.name ? state : room, lang, room.id), state, lang, feed));
  if (current && visible.includes(current)) {
    const outcome = shown(state, now);
    const stopped = outcome.source === "operator" && outcome.session === current.id
      && NOT_ON.has(outcome.status);
    card.append(sessionRow(current, base(lang, "now"), stopped ? statusText(state, lang)
      : base(lang, "left_min", { n: minutes(current.endMs - now) })));
  }
  if (next && visible.includes(next)) {
    card.append(sessionRow(next, base(lang, "next"),
      `${time(next.startMs)} · ${base(lang, "in_min", { n: minutes(next.startMs - now) })}`));
  }
  return card;
}

function changeItems(now) {
  const items = [];
  for (const room of program.rooms) {
    const state = roomState(room.id);
    // Only while the status holds: a delay of a session long over is no news.
    const outcome = shown(state, now);
    if (outcome.source === "operator" && NEWS.has(outcome.status)) {
      const item = el("li");
      item.append(el("span", statusText(state, lang), { class: "kind" }), " ",
        bdi(roomName(state.name ? state : room, lang, room.id)));
      items.push(item);
    }
  }
  for (const change of [...(feed?.state("venue").changes || [])].reverse()) {
    const item = el("li", null, { "data-seen": String(seenChanges.has(changeKey(change))) });
    item.append(el("span", tr(change.kind), { class: "kind" }), " ", bdi(change.title));
    items.push(item);
  }
  return items.length ? items : [el("li", tr("nothing"), { class: "empty" })];
}

function allChangesSeen() {
  for (const change of feed?.state("venue").changes || []) seenChanges.add(changeKey(change));
  keep("feed-seen-changes", [...seenChanges].slice(-500));
  render();
}

// ---- screen readers: each status change and announcement said once --------------------------

function say(text) {
  const node = $("spoken");
  node.textContent = "";
  // A new text node in an emptied region is what screen readers reliably speak.
  setTimeout(() => { node.textContent = text; }, 50);
}

function spokenChange(event) {
  const { channel, event: message } = event.detail;
  if (!message || !channel.startsWith("room:")) return;
  const id = channel.slice(5);
  const room = index.rooms.get(id);
  const name = roomName(room, lang, id);
  if (message.kind === "status") say(`${name}: ${statusText(feed.state(channel), lang)}`);
}

function spokenAnnouncements(notes) {
  const fresh = notes.filter((a) => !spoken.has(a.id));
  for (const a of fresh) spoken.add(a.id);
  if (fresh.length && feed.online) {
    say(fresh.map((a) => inLanguage(a.text, lang)).join(". "));
  }
}

// ---- the page ---------------------------------------------------------------------------------

function render() {
  if (!feed) return; // the feed starts as soon as the program's rooms are known
  const now = feed.now();
  const venue = feed.state("venue");
  if (venue?.schedule?.etag && venue.schedule.etag !== program.etag) refreshProgram();
  guarded(
    () => connectionBanner($("connection"), feed, lang),
    () => setText($("clock"), clockText(feed, lang, now)),
    () => {
      const title = program.conference?.title || location.host;
      document.title = title;
      keyed($("conference"), title, () => [bdi(title)]);
      setText($("search-label"), tr("search"));
      setText($("room-label"), tr("room"));
      setText($("track-label"), tr("track"));
      setText($("language-label"), tr("language"));
      setText($("favourites-label"), tr("favourites"));
      setText($("rooms-label"), tr("rooms_now"));
    },
    () => alerts(now, { reveal: performance.now() < revealUntil }),
    () => dayButtons(now),
    () => viewButtons(),
    () => listing(now),
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
      spokenAnnouncements(notes);
      emergencyOverlay($("emergency"), emergency, lang);
    },
    () => {
      setText($("changes-label"), tr("changes"));
      const items = changeItems(now);
      keyed($("changes"), JSON.stringify([lang, items.map((i) => [i.textContent, i.dataset.seen])]),
        () => items);
      const unseen = (feed?.state("venue").changes || []).some((c) => !seenChanges.has(changeKey(c)));
      $("changes-seen").hidden = !unseen;
      setText($("changes-seen"), tr("changes_seen"));
    },
  );
  document.body.dataset.ready = program.sessions.length ? "program" : "empty";
}

function startFeed() {
  feed = new FeedClient(["venue", ...program.rooms.map((r) => `room:${r.id}`)],
    { persist: "feed-phone", ...pageOptions("phone") });
  feed.addEventListener("change", (event) => {
    render();
    spokenChange(event);
  });
  let wasOnline = false;
  feed.addEventListener("connection", () => {
    if (feed.online && !wasOnline) revealUntil = performance.now() + 5000;
    wasOnline = feed.online;
    render();
  });
  feed.start();
}

async function start() {
  setLanguage(lang);
  languageButtons($("languages"), lang, (chosen) => {
    lang = chosen;
    rows.clear();
    filters();
    render();
  });
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("filters").addEventListener("input", () => render());
  $("filters").addEventListener("change", () => render());
  $("alerts-seen").addEventListener("click", alertsSeen);
  $("changes-seen").addEventListener("click", allChangesSeen);
  // The phone's copy first, at once, whatever the network does; the feed then says whether a
  // newer program exists (venue's schedule etag), and only then is it fetched.
  const cached = await cachedProgram();
  if (cached) useProgram(cached);
  else await Promise.race([refreshProgram(), new Promise((done) => setTimeout(done, 8000))]);
  revealUntil = performance.now() + 5000;
  startFeed();
  render();
  setInterval(render, 1000);
}

start();
