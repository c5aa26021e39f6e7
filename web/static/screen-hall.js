// The hall's overview: /screen/hall. Every room's now and next, delays and full rooms, and the
// announcements for everyone; an emergency takes over the screen.
import { FeedClient, nowAndNext } from "/static/feed-client.js";
import { chooseLanguage, setLanguage, t } from "/static/i18n.js";
import {
  $, announcementItems, badge, bdi, clockText, connectionBanner, el, emergencyOverlay,
  languageButtons, ltr, sessionBlock,
} from "/static/ui.js";

let lang = chooseLanguage();
let feed = null;
let rooms = [];

async function programRooms() {
  const answer = await fetch("/api/schedule");
  if (answer.ok) return (await answer.json()).rooms;
  const channels = await (await fetch("/api/channels")).json(); // no program imported yet
  return channels.channels.filter((c) => c.startsWith("room:"))
    .map((c) => ({ id: c.slice(5), name: c.slice(5) }));
}

function minutes(ms) {
  return Math.max(0, Math.ceil(ms / 60_000));
}

function card(room, now) {
  const state = feed.state(`room:${room.id}`);
  const time = (ms) => clockText(feed, lang, ms);
  const box = el("article", null, { class: "card", "data-room": room.id });
  const heading = el("h2");
  heading.append(bdi(state.name || room.name));
  const status = el("span", null, { class: "badge" });
  badge(status, state, lang);
  heading.append(status);
  box.append(heading);
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

function render() {
  if (!feed) return;
  const now = feed.now();
  const conference = feed.state("venue").schedule?.conference;
  $("conference").replaceChildren(bdi(conference?.title || location.host));
  $("clock").textContent = clockText(feed, lang, now);
  $("rooms").replaceChildren(...rooms.map((room) => card(room, now)));
  const notes = feed.announcements(["venue"]);
  const emergency = feed.announcements(["venue", ...rooms.map((r) => `room:${r.id}`)])
    .find((a) => a.priority === "emergency");
  $("announcements-label").textContent = t(lang, "announcements");
  $("announcements").replaceChildren(
    ...announcementItems(notes.filter((a) => a.priority !== "emergency"), lang));
  emergencyOverlay($("emergency"), emergency, lang);
  connectionBanner($("connection"), feed, lang);
}

async function start() {
  setLanguage(lang);
  languageButtons($("languages"), lang, (chosen) => { lang = chosen; render(); });
  for (let attempt = 0; ; attempt += 1) {
    try {
      rooms = await programRooms();
      break;
    } catch {
      await new Promise((done) => setTimeout(done, Math.min(10_000, 500 * 2 ** attempt)));
    }
  }
  feed = new FeedClient(["venue", ...rooms.map((r) => `room:${r.id}`)]);
  feed.addEventListener("change", render);
  feed.addEventListener("connection", render);
  feed.start();
  render();
  setInterval(render, 1000);
}

start();
