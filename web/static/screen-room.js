// The screen at a room's door: /screen/room/{room}.
import { FeedClient, nowAndNext } from "/static/feed-client.js";
import { chooseLanguage, setLanguage, t } from "/static/i18n.js";
import {
  $, announcementItems, badge, bdi, clockText, connectionBanner, el, emergencyOverlay,
  languageButtons, ltr, sessionBlock,
} from "/static/ui.js";

const room = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const channel = `room:${room}`;
const feed = new FeedClient([channel, "venue"]);
let lang = chooseLanguage();

function minutes(ms) {
  return Math.max(0, Math.ceil(ms / 60_000));
}

function render() {
  const state = feed.state(channel);
  const now = feed.now();
  const time = (ms) => clockText(feed, lang, ms);
  document.title = state.name || room;
  $("room").replaceChildren(bdi(state.name || room));
  $("clock").textContent = time(now);
  $("clock").dateTime = new Date(now).toISOString();
  badge($("status"), state, lang);

  const { now: current, next } = nowAndNext(state.sessions, now, state.delay);
  $("now-label").textContent = t(lang, "now");
  $("next-label").textContent = t(lang, "next");
  $("now").replaceChildren(current
    ? sessionBlock(current, lang, `${ltr(`${time(current.startMs)}–${time(current.endMs)}`)} · ${
      t(lang, "left_min", { n: minutes(current.endMs - now) })}`)
    : el("p", t(lang, "nothing_now"), { class: "empty" }));
  $("next").replaceChildren(next
    ? sessionBlock(next, lang, `${ltr(time(next.startMs))} · ${
      t(lang, "in_min", { n: minutes(next.startMs - now) })}`)
    : el("p", t(lang, "nothing_next"), { class: "empty" }));

  const notes = feed.announcements([channel, "venue"]);
  const emergency = notes.find((a) => a.priority === "emergency");
  $("announcements-label").textContent = t(lang, "announcements");
  $("announcements").replaceChildren(
    ...announcementItems(notes.filter((a) => a !== emergency), lang));
  emergencyOverlay($("emergency"), emergency, lang);
  connectionBanner($("connection"), feed, lang);
}

setLanguage(lang);
languageButtons($("languages"), lang, (chosen) => { lang = chosen; render(); });
feed.addEventListener("change", render);
feed.addEventListener("connection", render);
feed.start();
render();
setInterval(render, 1000);
