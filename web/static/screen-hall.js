// The hall's overview: /screen/hall. Every room's now and next, delays and full rooms, and the
// announcements for everyone; an emergency takes over the screen.
//
// Every card is shown whole, whatever the number of rooms and the length of their titles: the
// cards are measured as they will be shown, packed column by column in the program's order into
// pages that fit the screen, and the pages take turns, each held long enough to read, with
// "2 / 4" in the bar. A scrolling ticker would show most texts only in passing. The
// announcements have their own band under the rooms, paged the same way when they do not fit,
// so they never cover a room.
import { FeedClient, inLanguage, nowAndNext, pageOptions } from "/static/feed-client.js";
import { chooseLanguage, setLanguage, t } from "/static/i18n.js";
import {
  $, announcementItems, bdi, clockText, connectionBanner, el, emergencyOverlay, guarded,
  keyed, knowRooms, languageButtons, ltr, minutes, roomHeading, roomName, sessionBlock, setText,
} from "/static/ui.js";

const COLUMN_EM = 21; // the narrowest column a card stays readable in, in the hall's type size
const LARGER = [2, 1.75, 1.5, 1.25]; // type sizes tried, largest first, when one page holds all
// The announcements' band takes at most this share of the height; more only for one announcement
// longer than that, shown whole, the rooms getting what is left.
const BAND_SHARE = 0.35;
// How long a page stays, from its text: a reader finds their room (`base`), then reads its card
// (`perChar`, for the longest card on the page); announcements are read whole, all of them.
// Within bounds that keep a full turn of 60 rooms on a 1080p screen under two minutes.
const ROOMS_HOLD = { min: 10_000, max: 15_000, base: 3_000, perChar: 25 };
const NOTES_HOLD = { min: 10_000, max: 20_000, base: 2_000, perChar: 60 };

let lang = chooseLanguage();
let feed = null;
let rooms = [];
let etag = null;

// Which page of a list is on display and since when. Pages hold item keys (room ids,
// announcement ids); after a new layout the page holding the first item on display is shown,
// so a layout that changes (a title, a new minute, a resized screen) never skips an item.
class Rotation {
  constructor(hold) {
    this.hold = hold;
    this.pages = [];
    this.index = 0;
    this.since = performance.now();
  }

  first() {
    return this.pages[this.index]?.flat()[0];
  }

  relayout(pages) {
    if (!this.pages.length) this.since = performance.now(); // the first page goes up now
    const first = this.first();
    const at = pages.findIndex((page) => page.flat().includes(first));
    this.pages = pages;
    this.index = at >= 0 ? at : Math.min(this.index, Math.max(0, pages.length - 1));
  }

  // True when the page on display has been read: the next one goes up.
  turned(textLength) {
    const { min, max, base, perChar } = this.hold;
    const hold = Math.min(max, Math.max(min, base + textLength * perChar));
    if (this.pages.length < 2) this.since = performance.now();
    if (this.pages.length < 2 || performance.now() - this.since < hold) return false;
    this.index = (this.index + 1) % this.pages.length;
    this.since = performance.now();
    return true;
  }

  label() {
    return this.pages.length > 1 ? ltr(`${this.index + 1} / ${this.pages.length}`) : "";
  }
}

const roomPages = new Rotation(ROOMS_HOLD);
const notePages = new Rotation(NOTES_HOLD);
let roomsShown = null; // what the rooms' layout was made for
let notesShown = null;
let roomLayout = []; // the page elements, in order
let cardsByRoom = new Map();

// Items of these heights, in order, into columns at most `height` high, `columns` to a page:
// pages of columns of item indices. An item taller than a column gets a column to itself (it is
// shown whole; only then can the page scroll).
function pack(heights, height, columns, gap) {
  const pages = [];
  let page = [];
  let column = [];
  let used = 0;
  heights.forEach((h, i) => {
    if (column.length && used + gap + h > height) {
      page.push(column);
      if (page.length === columns) {
        pages.push(page);
        page = [];
      }
      column = [];
    }
    used = column.length ? used + gap + h : h;
    column.push(i);
  });
  if (column.length) page.push(column);
  if (page.length) pages.push(page);
  return pages;
}

// The same items, in the same order, in columns as even as they can be: four rooms fill four
// columns rather than two, and a last page does not huddle at the start. The lowest column
// height that still holds the page's items in its columns, found by bisection.
function balanced(page, heights, columns, gap) {
  const items = page.flat();
  const own = items.map((i) => heights[i]);
  const fits = (h) => pack(own, h, columns, gap).length <= 1;
  let low = Math.max(...own);
  let high = own.reduce((sum, h) => sum + h + gap, 0);
  if (!fits(high)) return page;
  while (high - low > 1) {
    const middle = (low + high) / 2;
    if (fits(middle)) high = middle;
    else low = middle;
  }
  const best = fits(low) ? low : high;
  return pack(own, best, columns, gap)[0].map((column) => column.map((n) => items[n]));
}

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
    const slot = el("div", null, { class: "slot now" });
    slot.append(el("p", t(lang, "now"), { class: "label" }),
      sessionBlock(current, lang, t(lang, "left_min", { n: minutes(current.endMs - now) })));
    box.append(slot);
  }
  if (next) {
    const slot = el("div", null, { class: "slot next" });
    slot.append(el("p", t(lang, "next"), { class: "label" }),
      sessionBlock(next, lang, `${ltr(time(next.startMs))} · ${
        t(lang, "in_min", { n: minutes(next.startMs - now) })}`));
    box.append(slot);
  }
  if (!current && !next) box.append(el("p", t(lang, "nothing_next"), { class: "empty" }));
  return box;
}

// The cards measured at the width of a column, then dealt into pages of columns; when every
// room fits on one page with room to spare, larger type, as large as still fits.
function layRooms(cards) {
  const main = $("rooms");
  const measure = $("measure");
  const attempt = (scale) => {
    main.style.fontSize = measure.style.fontSize = `${scale}em`;
    const style = getComputedStyle(main);
    const gap = parseFloat(getComputedStyle(measure).rowGap) || 0;
    const width = main.clientWidth - parseFloat(style.paddingInlineStart)
      - parseFloat(style.paddingInlineEnd);
    const height = main.clientHeight - parseFloat(style.paddingBlockStart)
      - parseFloat(style.paddingBlockEnd);
    const columns = Math.max(1,
      Math.floor((width + gap) / (COLUMN_EM * parseFloat(style.fontSize) + gap)));
    measure.style.inlineSize = `${(width - gap * (columns - 1)) / columns}px`;
    measure.replaceChildren(...cards);
    const heights = cards.map((c) => c.getBoundingClientRect().height);
    const pages = pack(heights, height, columns, gap)
      .map((page) => balanced(page, heights, columns, gap));
    return { pages, columns, scale };
  };
  let layout = attempt(1);
  if (layout.pages.length === 1) {
    for (const scale of LARGER) {
      const larger = attempt(scale);
      if (larger.pages.length === 1) {
        layout = larger;
        break;
      }
    }
  }
  main.style.fontSize = `${layout.scale}em`; // the one chosen, not the last one tried
  measure.replaceChildren();
  const { columns } = layout;
  const pages = layout.pages.map((page) => page.map((column) => column.map((i) => rooms[i].id)));
  roomPages.relayout(pages);
  cardsByRoom = new Map(cards.map((c) => [c.dataset.room, c]));
  roomLayout = pages.map((page) => {
    const box = el("div", null, { class: "page" });
    for (let i = 0; i < columns; i += 1) {
      const column = el("div", null, { class: "column" });
      column.append(...(page[i] || []).map((id) => cardsByRoom.get(id)));
      box.append(column);
    }
    return box;
  });
  main.replaceChildren(...roomLayout);
}

function showPage(pages, index, turned) {
  pages.forEach((page, i) => {
    page.hidden = i !== index;
    // A fade when a page goes up, never on a mere relayout (none with reduced motion: CSS).
    if (i === index && turned) {
      page.classList.remove("entering");
      void page.offsetWidth; // restart the animation
      page.classList.add("entering");
    }
  });
}

function renderRooms(now) {
  const cards = rooms.map((room) => card(room, now));
  const main = $("rooms");
  const key = JSON.stringify([lang, main.clientWidth, main.clientHeight,
    cards.map((c) => c.textContent)]);
  if (key !== roomsShown) {
    roomsShown = key;
    layRooms(cards);
    showPage(roomLayout, roomPages.index, false);
  }
  const text = Math.max(0, ...(roomPages.pages[roomPages.index] || []).flat()
    .map((id) => cardsByRoom.get(id)?.textContent.length || 0));
  if (roomPages.turned(text)) showPage(roomLayout, roomPages.index, true);
  setText($("page"), roomPages.label());
  $("page").hidden = roomPages.pages.length < 2;
}

// The band holds every announcement when they fit in its share of the screen; otherwise they
// take turns, a page at a time, and the band keeps the height of its tallest page so the rooms
// above do not move with each turn.
function renderNotes(notes) {
  const band = $("band");
  const list = $("announcements");
  const pager = $("announcement-page");
  setText($("announcements-label"), t(lang, "announcements"));
  band.hidden = notes.length === 0;
  const key = JSON.stringify([lang, innerWidth, innerHeight, notes.map((a) => [a.id, a.text])]);
  if (key !== notesShown) {
    notesShown = key;
    list.replaceChildren(...announcementItems(notes, lang));
    const items = [...list.children];
    items.forEach((item, i) => { item.dataset.id = notes[i].id; });
    list.style.minBlockSize = "";
    const gap = parseFloat(getComputedStyle(list).rowGap) || 0;
    const heights = items.map((item) => item.getBoundingClientRect().height);
    const layout = () => {
      const chrome = band.getBoundingClientRect().height - list.getBoundingClientRect().height;
      return pack(heights, innerHeight * BAND_SHARE - chrome, 1, gap);
    };
    pager.hidden = true;
    let pages = layout();
    if (pages.length > 1) {
      setText(pager, ltr(`${pages.length} / ${pages.length}`)); // its line counts too
      pager.hidden = false;
      pages = layout();
      const tallest = Math.max(...pages.map(([column]) => column
        .reduce((sum, i, n) => sum + (n ? gap : 0) + heights[i], 0)));
      list.style.minBlockSize = `${Math.ceil(tallest)}px`;
    }
    notePages.relayout(pages.map((page) => page.map((column) => column.map((i) => notes[i].id))));
    showNotes(false);
  }
  const on = notePages.pages[notePages.index]?.flat() || [];
  const text = notes.filter((a) => on.includes(a.id))
    .reduce((sum, a) => sum + inLanguage(a.text, lang).length, 0);
  if (notePages.turned(text)) showNotes(true);
  setText(pager, notePages.label());
  pager.hidden = notePages.pages.length < 2;
}

function showNotes(turned) {
  const on = new Set(notePages.pages[notePages.index]?.flat() || []);
  for (const item of $("announcements").children) {
    item.hidden = !on.has(item.dataset.id);
    if (turned && !item.hidden) {
      item.classList.remove("entering");
      void item.offsetWidth;
      item.classList.add("entering");
    }
  }
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
    // The band first: the rooms get the height it leaves.
    () => renderNotes(feed.announcements(["venue"]).filter((a) => a.priority !== "emergency")),
    () => renderRooms(now),
    () => {
      const emergency = feed.announcements(["venue", ...rooms.map((r) => `room:${r.id}`)])
        .find((a) => a.priority === "emergency");
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
  // A resized screen, or a banner that takes height: lay the pages out again at once.
  new ResizeObserver(() => render()).observe($("rooms"));
}

start();
