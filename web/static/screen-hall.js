// The hall's overview: /screen/hall. Every room's now and next, delays and full rooms, and the
// announcements for everyone; an emergency takes over the screen.
import { FeedClient, nowAndNext, pageOptions } from "/static/feed-client.js";
import { chooseLanguage, setLanguage, t } from "/static/i18n.js";
import {
  $, announcementItems, bdi, clockText, connectionBanner, el, emergencyOverlay, guarded,
  keyed, knowRooms, languageButtons, ltr, minutes, roomHeading, roomName, sessionBlock, setText,
} from "/static/ui.js";

let lang = chooseLanguage();
let feed = null;
let rooms = [];
let etag = null;

async function programRooms() {
  const answer = await fetch("/api/schedule", { signal: AbortSignal.timeout(5000) });
  if (answer.ok) {
    etag = (answer.headers.get("ETag") || "").replaceAll('"', "") || null;
    const { rooms } = await answer.json();
    knowRooms(rooms);
    return rooms;
  }
  if (answer.status !== 404) throw new Error(`${answer.status}`);
  const channels = await (await fetch("/api/channels")).json(); // no program imported yet
  return channels.channels.filter((c) => c.startsWith("room:"))
    .map((c) => ({ id: c.slice(5), name: c.slice(5) }));
}

function card(room, now) {
  const state = feed.state(`room:${room.id}`);
  const time = (ms) => clockText(feed, lang, ms);
  const box = el("article", null, { class: "card", "data-room": room.id });
  box.append(roomHeading(roomName(state.name ? state : room, lang, room.id), state, lang, feed));
  const { now: current, next } = nowAndNext(state.sessions, now, state.delay);
  if (current) {
    box.append(el("p", t(lang, "now"), { class: "label" }),
      sessionBlock(current, lang, t(lang, "left_min", { n: minutes(current.endMs - now) })));
  }
  if (next) {
    box.append(el("p", t(lang, "next"), { class: "label" }),
      sessionBlock(next, lang, `${ltr(time(next.startMs))} · ${
        t(lang, "in_min", { n: minutes(next.startMs - now) })}`));
  }
  if (!current && !next) box.append(el("p", t(lang, "nothing_next"), { class: "empty" }));
  return box;
}

// A new program was imported: start again from it (at most once a minute, whatever happens).
function reloadForProgram() {
  const last = Number(sessionStorage.getItem("feed-reloaded") || 0);
  if (Date.now() - last > 60_000) {
    sessionStorage.setItem("feed-reloaded", String(Date.now()));
    location.reload();
  }
}

function render() {
  if (!feed) return;
  const now = feed.now();
  const venue = feed.state("venue");
  if (venue.schedule?.etag && venue.schedule.etag !== etag) reloadForProgram();
  guarded(
    () => connectionBanner($("connection"), feed, lang),
    () => setText($("clock"), clockText(feed, lang, now)),
    () => {
      const title = venue.schedule?.conference?.title || location.host;
      keyed($("conference"), title, () => [bdi(title)]);
    },
    () => {
      const cards = rooms.map((room) => card(room, now));
      keyed($("rooms"), JSON.stringify([lang, cards.map((c) => c.textContent)]), () => cards);
    },
    () => {
      const notes = feed.announcements(["venue"]).filter((a) => a.priority !== "emergency");
      const emergency = feed.announcements(["venue", ...rooms.map((r) => `room:${r.id}`)])
        .find((a) => a.priority === "emergency");
      setText($("announcements-label"), t(lang, "announcements"));
      keyed($("announcements"), JSON.stringify([lang, notes.map((a) => [a.id, a.text])]),
        () => announcementItems(notes, lang));
      emergencyOverlay($("emergency"), emergency, lang);
      if (emergency) feed.ack(emergency.id); // on display: tell the console
    },
  );
}

async function start() {
  setLanguage(lang);
  languageButtons($("languages"), lang, (chosen) => { lang = chosen; render(); });
  for (let attempt = 0; ; attempt += 1) {
    try {
      rooms = await programRooms();
      localStorage.setItem("feed-hall-rooms", JSON.stringify(rooms));
      break;
    } catch {
      // The server or Redis is away: start from the rooms seen last time, if any.
      try {
        rooms = JSON.parse(localStorage.getItem("feed-hall-rooms") || "[]");
      } catch {
        rooms = [];
      }
      if (rooms.length) break;
      $("connection").hidden = false;
      setText($("connection"), t(lang, "offline", { t: "" }).replace(/\s*:.*$/, ""));
      await new Promise((done) => setTimeout(done, Math.min(10_000, 500 * 2 ** attempt)));
    }
  }
  feed = new FeedClient(["venue", ...rooms.map((r) => `room:${r.id}`)], {
    persist: "feed-hall", ...pageOptions("screen"),
  });
  feed.addEventListener("change", render);
  feed.addEventListener("connection", render);
  feed.start();
  render();
  setInterval(render, 1000);
}

start();
