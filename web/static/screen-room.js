// The screen at a room's door: /screen/room/{room}. Everything from operators, moderators or
// the imported program is set as text (textContent), never parsed as HTML.
import { FeedClient, inLanguage, nowAndNext } from "/static/feed-client.js";
import { LANGUAGES, chooseLanguage, setLanguage, t } from "/static/i18n.js";

const room = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const channel = `room:${room}`;
const feed = new FeedClient([channel, "venue"]);
let lang = chooseLanguage();

const $ = (id) => document.getElementById(id);

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function bdi(text) {
  return el("bdi", text); // names in another script keep their own direction
}

function zone() {
  return feed.state("venue").schedule?.conference?.timezone || "UTC";
}

function clockText(ms) {
  return new Intl.DateTimeFormat(lang === "ar" ? "ar-MA" : lang, {
    hour: "2-digit", minute: "2-digit", timeZone: zone(), hour12: false,
  }).format(new Date(ms));
}

// Times stay left to right inside Arabic text (U+2066 LEFT-TO-RIGHT ISOLATE ... U+2069).
function ltr(text) {
  return `\u2066${text}\u2069`;
}

function trackColour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 70% 60%)`;
}

function sessionBlock(session, whenText) {
  const box = el("div");
  const title = el("p", null, { class: "title" });
  title.append(bdi(inLanguage(session.titles && Object.keys(session.titles).length
    ? session.titles : session.title, lang)));
  box.append(title);
  const meta = el("p", null, { class: "meta" });
  if (session.speakers?.length) meta.append(bdi(session.speakers.join(", ")));
  if (session.track) {
    const track = el("span", null, { class: "track" });
    track.style.setProperty("--track", trackColour(session.track));
    track.append(bdi(session.track));
    meta.append(track);
  }
  if (session.language) meta.append(el("span", session.language, { class: "lang" }));
  meta.append(el("span", whenText, { class: "when" }));
  box.append(meta);
  return box;
}

function statusText(state) {
  if (!state.status) return "";
  const values = { n: state.delay || 0, room: state.moved_to || "" };
  return t(lang, `status_${state.status}`, values);
}

function render() {
  const state = feed.state(channel);
  const now = feed.now();
  document.title = state.name || room;
  $("room").replaceChildren(bdi(state.name || room));
  $("clock").textContent = clockText(now);
  $("clock").dateTime = new Date(now).toISOString();

  const badge = $("status");
  badge.textContent = statusText(state);
  badge.hidden = !state.status;
  if (state.status) badge.dataset.status = state.status;

  const { now: current, next } = nowAndNext(state.sessions, now, state.delay);
  $("now-label").textContent = t(lang, "now");
  $("next-label").textContent = t(lang, "next");
  $("now").replaceChildren(current
    ? sessionBlock(current, `${ltr(`${clockText(current.startMs)}–${clockText(current.endMs)}`)} · ${
      t(lang, "left_min", { n: Math.max(0, Math.ceil((current.endMs - now) / 60_000)) })}`)
    : el("p", t(lang, "nothing_now"), { class: "empty" }));
  $("next").replaceChildren(next
    ? sessionBlock(next, `${clockText(next.startMs)} · ${
      t(lang, "in_min", { n: Math.max(0, Math.ceil((next.startMs - now) / 60_000)) })}`)
    : el("p", t(lang, "nothing_next"), { class: "empty" }));

  const notes = feed.announcements([channel, "venue"]);
  const emergency = notes.find((a) => a.priority === "emergency");
  $("announcements-label").textContent = t(lang, "announcements");
  $("announcements").replaceChildren(...notes.filter((a) => a !== emergency).map((a) => {
    const item = el("li", null, { "data-priority": a.priority });
    if (a.priority === "important") item.append(el("span", "!", { class: "priority" }));
    item.append(bdi(inLanguage(a.text, lang)));
    return item;
  }));
  const overlay = $("emergency");
  overlay.hidden = !emergency;
  if (emergency) {
    overlay.querySelector(".emergency-label").textContent = t(lang, "emergency");
    overlay.querySelector(".emergency-text").textContent = inLanguage(emergency.text, lang);
  }

  const banner = $("connection");
  banner.hidden = feed.online;
  if (!feed.online) {
    const since = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" })
      .format(new Date(feed.offlineSince));
    banner.textContent = t(lang, feed.ws ? "paused" : "offline", { t: since });
  }
  document.body.dataset.online = String(feed.online);
}

function languages() {
  $("languages").replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => {
    const button = el("button", name, { type: "button", lang: code, "aria-pressed": String(code === lang) });
    button.addEventListener("click", () => {
      lang = code;
      setLanguage(lang);
      languages();
      render();
    });
    return button;
  }));
}

setLanguage(lang);
languages();
feed.addEventListener("change", render);
feed.addEventListener("connection", render);
feed.start();
render();
setInterval(render, 1000);
