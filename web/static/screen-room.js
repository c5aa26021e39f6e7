// The screen at a room's door: /screen/room/{room}.
import { FeedClient, nowAndNext, pageOptions } from "/static/feed-client.js";
import { chooseLanguage, setLanguage, t } from "/static/i18n.js";
import {
  $, announcementItems, badge, bdi, clockText, connectionBanner, el, emergencyOverlay, guarded,
  keyed, knowRooms, languageButtons, ltr, minutes, roomName, sessionBlock, setText, statusText,
} from "/static/ui.js";

// Operator statuses that say the session on now is not going on as the program has it: beside
// it, "N minutes left" would contradict the badge, so its line says the status instead.
const NOT_ON = new Set(["ended", "cancelled", "moved"]);

function roomOfPath() {
  try {
    return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  } catch {
    return "";
  }
}

const room = roomOfPath();
// A mistyped room must not cost this screen the venue's announcements and emergencies.
const wellFormed = /^[a-z0-9][a-z0-9_-]{0,63}$/.test(room);
const channel = `room:${room}`;
const feed = new FeedClient(wellFormed ? [channel, "venue"] : ["venue"], pageOptions("screen"));
// Not a room id, or the server says the program has no such room.
const known = () => wellFormed && !feed.unknown.has(channel);
let lang = chooseLanguage();

function render() {
  const state = feed.state(channel);
  const now = feed.now();
  const time = (ms) => clockText(feed, lang, ms);
  let outcome = null;
  guarded(
    () => connectionBanner($("connection"), feed, lang),
    () => {
      setText($("clock"), time(now));
      $("clock").dateTime = new Date(now).toISOString();
      $("clock").setAttribute("aria-label", t(lang, "clock"));
    },
    () => {
      const name = known() ? roomName(state, lang, room) : t(lang, "unknown_room");
      rooms(feed.state("venue").schedule?.etag ?? null);
      document.title = name;
      keyed($("room"), name, () => [bdi(name)]);
      outcome = badge($("status"), state, lang, feed);
    },
    () => {
      const { now: current, next } = nowAndNext(state.sessions, now, state.delay);
      setText($("now-label"), t(lang, "now"));
      setText($("next-label"), t(lang, "next"));
      const stopped = current && outcome?.source === "operator" && outcome.session === current.id
        && NOT_ON.has(outcome.status);
      const span = current && ltr(`${time(current.startMs)}–${time(current.endMs)}`);
      const nowText = current && `${span} · ${stopped ? statusText(state, lang)
        : t(lang, "left_min", { n: minutes(current.endMs - now) })}`;
      keyed($("now"), JSON.stringify([lang, current, nowText]), () => [current
        ? sessionBlock(current, lang, nowText)
        : el("p", t(lang, "nothing_now"), { class: "empty" })]);
      const nextText = next && `${ltr(time(next.startMs))} · ${
        t(lang, "in_min", { n: minutes(next.startMs - now) })}`;
      keyed($("next"), JSON.stringify([lang, next, nextText]), () => [next
        ? sessionBlock(next, lang, nextText)
        : el("p", t(lang, "nothing_next"), { class: "empty" })]);
    },
    () => {
      const notes = feed.announcements(known() ? [channel, "venue"] : ["venue"]);
      const emergency = notes.find((a) => a.priority === "emergency");
      const others = notes.filter((a) => a !== emergency);
      setText($("announcements-label"), t(lang, "announcements"));
      keyed($("announcements"), JSON.stringify([lang, others.map((a) => [a.id, a.text])]),
        () => announcementItems(others, lang));
      emergencyOverlay($("emergency"), emergency, lang);
      if (emergency) feed.ack(emergency.id); // on display: tell the console
    },
  );
}

// The program's rooms, read again with each new version: a room moved elsewhere names its
// destination in the page's language.
let roomsOf;
function rooms(etag) {
  if (etag === roomsOf) return;
  roomsOf = etag;
  fetch("/api/schedule", { signal: AbortSignal.timeout(5000) })
    .then((answer) => (answer.ok ? answer.json() : { rooms: [] }))
    .then((program) => { knowRooms(program.rooms); render(); })
    .catch(() => { roomsOf = undefined; }); // offline: try again on a later render
}

setLanguage(lang);
languageButtons($("languages"), lang, (chosen) => { lang = chosen; render(); });
feed.addEventListener("change", render);
feed.addEventListener("connection", render);
feed.start();
render();
setInterval(render, 1000);
