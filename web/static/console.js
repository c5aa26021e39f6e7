// The operators' and moderators' console: /console. Signs in with a token (kept on this device);
// an operator changes its rooms' status with one tap, a moderator writes announcements in
// French, Arabic and English. Each action says whether it reached the feed, or why not: "sent"
// when the API accepted it, "on screens" when the same change came back through the feed.
import { FeedClient, inLanguage, nowAndNext, pageOptions } from "/static/feed-client.js";
import { chooseLanguage, fill, setLanguage, t as base } from "/static/i18n.js";
import {
  $, badge, bdi, clockText, connectionBanner, el, keyed, knowRooms, languageButtons, roomName,
  setText,
} from "/static/ui.js";

const TEXT = {
  en: {
    title: "Console", token: "Your token", sign_in: "Sign in", sign_out: "Sign out",
    signin_help: "Tokens come from whoever runs the feed: {command} prints one on its last line"
      + " (see “Tokens” in the README).",
    role_operator: "operator", role_moderator: "moderator", role_admin: "admin", room_arg: "ROOM",
    err_unauthorized: "This token is unknown or was revoked",
    err_forbidden: "This token does not allow it", err_not_found: "Not found: already gone?",
    err_rate_limited: "Too many requests: try again in a moment",
    err_unavailable: "The feed cannot reach its database: try again shortly",
    err_invalid: "Refused: a value is not valid ({field})",
    err_malformed: "Refused: the request could not be read",
    err_limit: "Refused: over a limit (too long or too many)",
    err_conflict: "Changed elsewhere at the same moment: try again",
    err_other: "Error {status}", unreachable: "The server cannot be reached",
    rooms: "Rooms", announce: "Announcements", text_fr: "Text in French",
    text_ar: "Text in Arabic", text_en: "Text in English", audience: "Audience",
    everyone: "Everyone", priority: "Priority", priority_info: "Information",
    priority_important: "Important", priority_emergency: "Emergency (until retracted)",
    expiry: "Leaves the screens after (minutes, optional)", preview: "Preview",
    send: "Send", current: "On the screens now", retract: "Retract", sending: "Sending…",
    sent: "Sent (#{seq}), waiting for the feed…", on_screens: "On the screens (#{seq})",
    sent_plain: "Sent, waiting for the feed…", on_screens_plain: "On the screens",
    failed: "Not sent: {why}", no_text: "Write the text in at least one language",
    not_seen: "Sent, but not seen on the screens yet: check the connection",
    viewers_phones: "{n} on phones", viewers_screens: { one: "{n} screen", other: "{n} screens" },
    screens: "Screens",
    online: "online", offline: "offline, last seen {t}",
    no_screens: "No screen registered yet. Register each one: {command}, then open it with {fragment} at the end of its address ({address})",
    never: "never connected: open it with #token=TOKEN at the end of its address",
    writes_refused: "Redis refuses changes ({why}): the screens keep what they show, but nothing can be sent until it takes writes again",
    source_ok: "Program kept current from {url}: last checked {t}",
    source_failing: "The program's source fails since {since} ({why}): the screens keep the last good program, retrying",
    receipts: { one: "On {shown} of {n} screen", other: "On {shown} of {n} screens" },
    missing: "not yet: {names}",
    plus5: "+5 min", plus10: "+10 min",
  },
  fr: {
    title: "Console", token: "Votre jeton", sign_in: "Se connecter", sign_out: "Se déconnecter",
    signin_help: "Les jetons viennent de l'équipe qui fait tourner le flux : {command} en affiche"
      + " un sur sa dernière ligne (voir « Tokens » dans le README).",
    role_operator: "opérateur", role_moderator: "modérateur", role_admin: "administrateur",
    room_arg: "SALLE",
    err_unauthorized: "Ce jeton est inconnu ou a été révoqué",
    err_forbidden: "Ce jeton ne le permet pas", err_not_found: "Introuvable : déjà retiré ?",
    err_rate_limited: "Trop de demandes : réessayez dans un instant",
    err_unavailable: "Le flux ne joint plus sa base : réessayez bientôt",
    err_invalid: "Refusé : une valeur n'est pas valable ({field})",
    err_malformed: "Refusé : la demande est illisible",
    err_limit: "Refusé : au-delà d'une limite (trop long ou trop nombreux)",
    err_conflict: "Modifié ailleurs au même moment : réessayez",
    err_other: "Erreur {status}", unreachable: "Le serveur ne répond pas",
    rooms: "Salles", announce: "Annonces", text_fr: "Texte en français",
    text_ar: "Texte en arabe", text_en: "Texte en anglais", audience: "Public",
    everyone: "Tout le monde", priority: "Priorité", priority_info: "Information",
    priority_important: "Important", priority_emergency: "Urgence (jusqu'au retrait)",
    expiry: "Disparaît des écrans après (minutes, facultatif)", preview: "Aperçu",
    send: "Envoyer", current: "Sur les écrans", retract: "Retirer", sending: "Envoi…",
    sent: "Envoyé (n° {seq}), en attente du flux…", on_screens: "Sur les écrans (n° {seq})",
    sent_plain: "Envoyé, en attente du flux…", on_screens_plain: "Sur les écrans",
    failed: "Non envoyé : {why}", no_text: "Écrivez le texte dans au moins une langue",
    not_seen: "Envoyé, mais pas encore vu sur les écrans : vérifiez la connexion",
    viewers_phones: "{n} sur téléphone", viewers_screens: { one: "{n} écran", other: "{n} écrans" },
    screens: "Écrans",
    online: "en ligne", offline: "hors ligne, vu à {t}",
    no_screens: "Aucun écran enregistré. Enregistrez chacun : {command}, puis ouvrez-le avec {fragment} à la fin de son adresse ({address})",
    never: "jamais connecté : ouvrez-le avec #token=JETON à la fin de son adresse",
    writes_refused: "Redis refuse les modifications ({why}) : les écrans gardent ce qu'ils affichent, mais rien ne peut être envoyé tant qu'il refuse d'écrire",
    source_ok: "Programme tenu à jour depuis {url} : vérifié à {t}",
    source_failing: "La source du programme échoue depuis {since} ({why}) : les écrans gardent le dernier bon programme, nouvel essai en cours",
    receipts: { one: "Affichée sur {shown} de {n} écran", other: "Affichée sur {shown} des {n} écrans" },
    missing: "pas encore : {names}",
    plus5: "+5 min", plus10: "+10 min",
  },
  ar: {
    title: "لوحة التحكم", token: "رمز الدخول", sign_in: "دخول", sign_out: "خروج",
    signin_help: "تأتي الرموز من الجهة التي تشغل البث: الأمر {command} يطبع رمزا في سطره الأخير"
      + " (انظر قسم «Tokens» في README).",
    role_operator: "مشغل القاعة", role_moderator: "مشرف", role_admin: "مدير", room_arg: "القاعة",
    err_unauthorized: "هذا الرمز غير معروف أو ألغي",
    err_forbidden: "هذا الرمز لا يسمح بذلك", err_not_found: "غير موجود: ربما سحب من قبل؟",
    err_rate_limited: "طلبات كثيرة جدا: أعد المحاولة بعد قليل",
    err_unavailable: "البث لا يصل إلى قاعدة بياناته: أعد المحاولة بعد قليل",
    err_invalid: "مرفوض: قيمة غير صالحة ({field})",
    err_malformed: "مرفوض: تعذرت قراءة الطلب",
    err_limit: "مرفوض: تجاوز حدا (طويل جدا أو كثير جدا)",
    err_conflict: "تغير من مكان آخر في اللحظة نفسها: أعد المحاولة",
    err_other: "خطأ {status}", unreachable: "تعذر الوصول إلى الخادم",
    rooms: "القاعات", announce: "الإعلانات", text_fr: "النص بالفرنسية",
    text_ar: "النص بالعربية", text_en: "النص بالإنجليزية", audience: "الجمهور",
    everyone: "الجميع", priority: "الأولوية", priority_info: "معلومة",
    priority_important: "مهم", priority_emergency: "طوارئ (حتى السحب)",
    expiry: "يختفي من الشاشات بعد (دقائق، اختياري)", preview: "معاينة",
    send: "إرسال", current: "على الشاشات الآن", retract: "سحب", sending: "جار الإرسال…",
    sent: "أرسل (رقم {seq})، في انتظار البث…", on_screens: "على الشاشات (رقم {seq})",
    sent_plain: "أرسل، في انتظار البث…", on_screens_plain: "على الشاشات",
    failed: "لم يرسل: {why}", no_text: "اكتب النص بلغة واحدة على الأقل",
    not_seen: "أرسل، لكنه لم يظهر بعد على الشاشات: تحقق من الاتصال",
    viewers_phones: "{n} على الهواتف",
    viewers_screens: {
      zero: "لا شاشة", one: "شاشة واحدة", two: "شاشتان", few: "{n} شاشات", many: "{n} شاشة",
      other: "{n} شاشة",
    },
    screens: "الشاشات",
    online: "متصلة", offline: "غير متصلة، آخر ظهور {t}",
    no_screens: "لا توجد شاشة مسجلة بعد. سجّل كل شاشة: {command}، ثم افتحها مع {fragment} في آخر عنوانها ({address})",
    never: "لم تتصل قط: افتحها مع #token=الرمز في آخر عنوانها",
    writes_refused: "يرفض Redis التغييرات ({why}): تحتفظ الشاشات بما تعرضه، لكن لا يمكن إرسال أي شيء حتى يقبل الكتابة من جديد",
    source_ok: "البرنامج محدَّث من {url}: آخر تحقق {t}",
    source_failing: "مصدر البرنامج يفشل منذ {since} ({why}): تحتفظ الشاشات بآخر برنامج سليم، وتتم إعادة المحاولة",
    receipts: {
      zero: "لا شاشة مسماة", one: "معروضة على {shown} من شاشة واحدة",
      two: "معروضة على {shown} من شاشتين", few: "معروضة على {shown} من {n} شاشات",
      many: "معروضة على {shown} من {n} شاشة", other: "معروضة على {shown} من {n} شاشة",
    },
    missing: "ليس بعد: {names}",
    plus5: "+5 د", plus10: "+10 د",
  },
};
const ACTIONS = [
  ["starting", {}], ["live", {}], ["plus5", { delayed: 5 }], ["plus10", { delayed: 10 }],
  ["full", {}], ["ended", {}], ["cancelled", {}],
];

let lang = chooseLanguage();
let me = null;
let rooms = [];
let feed = null;
const NOT_SEEN_MS = 20_000;
const WATCH_EVERY_MS = 3_000; // viewers, screens and receipts are asked this often
// Who is watching, as the servers report it: viewers per room, screens, receipts.
const watch = { presence: {}, screens: null, receipts: new Map() };
const waiting = new Map(); // result element -> a test that the change is on the screens

// What to type stays as typed, left to right, in every language: commands and addresses are
// code, set apart from the sentence around them.
const SCREEN_HELP = {
  command: "feed token create --role screen --name door-atlas-1 --room atlas",
  fragment: "#token=TOKEN",
  address: "/screen/room/atlas#token=…",
};

function withCode(node, text, codes) {
  for (const part of text.split(/(\{\w+\})/)) {
    const name = part.match(/^\{(\w+)\}$/)?.[1];
    node.append(name && codes[name] ? el("code", codes[name], { dir: "ltr" }) : part);
  }
  return node;
}

function tr(key, values = {}) {
  const text = TEXT[lang]?.[key] ?? TEXT.en[key];
  if (text === undefined) return base(lang, key, values);
  return fill(text, lang, values);
}

// An API refusal, kept as the server's code so it is worded in the reader's language: the
// server's own message (English) stays in `detail`, for whoever reads the page's source.
class ApiError extends Error {
  constructor(code, field, status, detail) {
    super(detail || code);
    Object.assign(this, { code, field, status, detail });
  }
}

function errorText(error) {
  if (!(error instanceof ApiError)) return error.message;
  if (error.code === "unreachable") return tr("unreachable");
  const key = `err_${error.code}`;
  if (TEXT.en[key] === undefined) return tr("err_other", { status: error.status });
  return tr(key, { field: error.field || "—" });
}

let pending = ""; // a token being tried, saved on this device only once it works

function token() {
  return pending || localStorage.getItem("feed-token") || "";
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    headers["Idempotency-Key"] = crypto.randomUUID(); // a retried tap changes nothing twice
  }
  let answer;
  try {
    answer = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  } catch {
    throw new ApiError("unreachable", null, 0, "");
  }
  const data = answer.status === 204 ? {} : await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const { code, field, message } = data.error || {};
    throw new ApiError(code || "", field || null, answer.status, message || "");
  }
  return data;
}

function report(node, state, key, values) {
  node.dataset.state = state;
  node.textContent = tr(key, values);
}

// Run an action; `onScreens(done)` gives the test that tells when the feed shows its change.
async function act(result, send, onScreens) {
  report(result, "sending", "sending");
  try {
    const done = await send();
    report(result, "sent", done.seq === undefined ? "sent_plain" : "sent", { seq: done.seq });
    waiting.set(result, { test: onScreens(done), label: done.seq, since: Date.now() });
    settle();
  } catch (error) {
    report(result, "failed", "failed", { why: errorText(error) });
    if (error.detail) result.dataset.detail = error.detail;
  }
}

function settle() {
  for (const [result, { test, label, since }] of waiting) {
    if (!result.isConnected) {
      waiting.delete(result);
    } else if (feed && test()) {
      waiting.delete(result);
      report(result, "done", label === undefined ? "on_screens_plain" : "on_screens", { seq: label });
    } else if (Date.now() - since > NOT_SEEN_MS) {
      waiting.delete(result); // accepted by the server, but this console never saw it come back
      report(result, "failed", "not_seen");
    }
  }
}

function shows(channel, id) {
  return (feed.state(channel).announcements || []).some((a) => a.id === id);
}

// The session a status is about, so that it stops holding once that session is over and the
// next one inherits nothing (docs/protocol.md, "What a room shows"): the one on now, else the
// next one; "ended" names only a session still on, else it is the room's, until the next starts.
function sessionFor(status, state, delay) {
  const { now, next } = nowAndNext(state.sessions, feed.now(), delay);
  if (status === "ended") return now ? now.id : null;
  return (now || next)?.id ?? null;
}

function roomPanel(room) {
  const channel = `room:${room.id}`;
  const box = el("div", null, { class: "room", "data-room": room.id });
  const heading = el("h3");
  heading.append(bdi(roomName(room, lang, room.id)));
  const status = el("span", null, { class: "badge" });
  heading.append(status);
  const buttons = el("div", null, { class: "actions" });
  const result = el("p", null, { class: "result", role: "status" });
  for (const [key, special] of ACTIONS) {
    const button = el("button", key.startsWith("plus") ? tr(key) : base(lang, `status_${key}`,
      { n: 0, room: "" }), { type: "button", "data-status": key });
    button.addEventListener("click", () => {
      const state = feed.state(channel);
      const body = special.delayed
        ? { status: "delayed", delay_min: Math.min(1440, (state.delay || 0) + special.delayed) }
        : { status: key, delay_min: key === "ended" || key === "cancelled" ? 0 : state.delay || 0 };
      body.session = sessionFor(body.status, state, body.delay_min);
      act(result, () => api("POST", `/api/rooms/${encodeURIComponent(room.id)}/status`, body),
        (done) => () => (feed.states.get(done.channel)?.seq ?? -1) >= done.seq);
    });
    buttons.append(button);
  }
  const viewers = el("p", null, { class: "viewers" });
  box.append(heading, viewers, buttons, result);
  box.render = () => {
    badge(status, feed.state(channel), lang, feed);
    const here = watch.presence[room.id] || {};
    setText(viewers, `${tr("viewers_phones", { n: here.phone || 0 })} · ${
      tr("viewers_screens", { n: here.screen || 0 })}`);
  };
  return box;
}

function announcementText(form) {
  const text = {};
  for (const code of ["fr", "ar", "en"]) {
    const value = form.elements[code].value.trim();
    if (value) text[code] = value;
  }
  return text;
}

function renderPreview() {
  const form = $("announce");
  const text = announcementText(form);
  $("preview").replaceChildren(...Object.entries(text).map(([code, value]) => {
    const item = el("li", null, { lang: code, dir: code === "ar" ? "rtl" : "ltr" });
    item.append(bdi(value));
    return item;
  }));
}

function renderCurrent() {
  const channels = ["venue", ...rooms.map((r) => `room:${r.id}`)];
  const notes = feed.announcements(channels);
  keyed($("current"), JSON.stringify([lang, notes.map((a) => [a.id, a.text])]), () => notes.map((a) => {
    const item = el("li", null, { "data-priority": a.priority });
    item.append(bdi(inLanguage(a.text, lang)));
    const button = el("button", tr("retract"), { type: "button" });
    const result = el("span", null, { class: "result" });
    button.addEventListener("click", () => act(result,
      () => api("DELETE", `/api/announcements/${encodeURIComponent(a.id)}`),
      (done) => () => done.channels.every((channel) => !shows(channel, done.id))));
    item.append(button, result);
    if (a.priority === "emergency") {
      item.append(el("p", null, { class: "receipts", "data-receipts": a.id, role: "status" }));
    }
    return item;
  }));
  for (const line of $("current").querySelectorAll("[data-receipts]")) {
    const r = watch.receipts.get(line.dataset.receipts);
    if (!r) continue;
    const text = tr("receipts", { shown: r.shown.length, n: r.screens });
    setText(line, r.missing.length ? `${text} · ${tr("missing", { names: r.missing.join(", ") })}`
      : text);
    line.dataset.complete = String(!r.missing.length);
  }
}

function renderScreens() {
  if (!watch.screens) return;
  $("screens-title").textContent = tr("screens");
  const rows = watch.screens.map((s) => [s.name, s.online, s.last_seen, s.channels.join(" ")]);
  keyed($("screens"), JSON.stringify([lang, rows]), () => (rows.length ? rows.map(
    ([name, online, lastSeen, channels]) => {
      const item = el("li", null, { "data-screen": name, "data-online": String(online) });
      const when = feed && lastSeen ? clockText(feed, lang, lastSeen) : "";
      const state = online ? tr("online") : lastSeen ? tr("offline", { t: when }) : tr("never");
      item.append(bdi(name), " ", el("span", state, { class: "state" }), " ",
        el("span", channels, { class: "channels", dir: "ltr" }));
      return item;
    },
  ) : [withCode(el("li", null, { class: "empty" }), tr("no_screens", {
    command: "{command}", fragment: "{fragment}", address: "{address}",
  }), SCREEN_HELP)]));
}

// A Redis that refuses writes (out of memory, a read-only replica) still serves the screens,
// so the feed looks fine; /readyz says it, and so does this page, before anyone tries to send.
async function refreshWrites() {
  const line = $("writes");
  try {
    const ready = await fetch("/readyz", { cache: "no-store" }).then((a) => a.json());
    line.hidden = ready.writes !== "refused";
    if (!line.hidden) setText(line, tr("writes_refused", { why: ready.writes_refused || "" }));
  } catch {
    // The server itself is away: the connection banner says so.
  }
}

// `feed schedule follow`, when one keeps the program current: say where from, and say it loudly
// while the source fails (the screens then keep the last good program).
async function refreshSource() {
  const line = $("source");
  let state;
  try {
    state = await api("GET", "/api/schedule/follow");
  } catch {
    line.hidden = true; // no follower reports (404), or this role may not ask
    return;
  }
  const at = (ms) => (feed && Number.isFinite(ms) ? clockText(feed, lang, ms) : "");
  const failing = state.state === "failing";
  line.hidden = false;
  line.dataset.state = state.state;
  line.setAttribute("role", failing ? "alert" : "status");
  setText(line, failing
    ? tr("source_failing", { since: at(state.failing_since), why: state.error || "" })
    : tr("source_ok", { url: state.url, t: at(state.last_attempt) }));
}

// Ask the servers who is watching; a failure only leaves the last answer on the page.
async function refreshWatch() {
  refreshWrites();
  refreshSource();
  try {
    const [presence, screens] = await Promise.all([
      api("GET", "/api/presence"), api("GET", "/api/screens")]);
    watch.presence = presence.rooms;
    watch.screens = screens.screens;
    const emergencies = feed ? feed.announcements(["venue", ...rooms.map((r) => `room:${r.id}`)])
      .filter((a) => a.priority === "emergency") : [];
    const receipts = await Promise.all(emergencies.map((a) =>
      api("GET", `/api/announcements/${encodeURIComponent(a.id)}/receipts`)));
    watch.receipts = new Map(receipts.map((r) => [r.id, r]));
  } catch {
    return;
  }
  render();
}

// Who is signed in, with the role in the reader's language.
function renderWho() {
  if (!me) return;
  const signOut = el("button", tr("sign_out"), { type: "button" });
  signOut.addEventListener("click", () => { localStorage.removeItem("feed-token"); location.reload(); });
  const role = TEXT.en[`role_${me.role}`] === undefined ? me.role : tr(`role_${me.role}`);
  $("who").replaceChildren(bdi(`${me.name || me.id} · ${role}`), " ", signOut);
}

// Where tokens come from, with the command as code, left to right in every language.
function signinHelp() {
  const [before, after = ""] = tr("signin_help").split("{command}");
  const command = el("code", `feed token create --role operator --room ${tr("room_arg")}`,
    { dir: "ltr" });
  $("signin-help").replaceChildren(before, command, after);
}

// Who an announcement is for, in the reader's language; the boxes ticked stay ticked.
function renderAudience() {
  if (!me || me.role === "operator") return;
  const ticked = new Set([...$("audience").querySelectorAll("input:checked")].map((i) => i.value));
  const first = !$("audience").children.length;
  const everyone = el("label");
  const all = el("input", null, { type: "checkbox", name: "everyone", value: "everyone" });
  all.defaultChecked = true; // what the form goes back to once an announcement is sent
  all.checked = first || ticked.has("everyone");
  everyone.append(all, tr("everyone"));
  $("audience").replaceChildren(everyone, ...rooms.map((r) => {
    const label = el("label");
    const box = el("input", null, { type: "checkbox", name: "room", value: r.id });
    box.checked = ticked.has(r.id);
    label.append(box, bdi(r.name));
    return label;
  }));
}

function renderTexts() {
  document.title = tr("title");
  $("title").textContent = tr("title");
  $("token-label").textContent = tr("token");
  signinHelp();
  renderWho();
  renderAudience();
  $("signin-button").textContent = tr("sign_in");
  $("rooms-title").textContent = tr("rooms");
  $("announce-title").textContent = tr("announce");
  for (const node of document.querySelectorAll("[data-text]")) {
    node.textContent = tr(node.dataset.text);
  }
}

function render() {
  if (!feed) return;
  for (const box of $("rooms").children) box.render();
  if (me.role !== "operator") renderCurrent();
  renderScreens();
  connectionBanner($("connection"), feed, lang);
  settle();
}

async function signIn() {
  if (!token()) {
    $("signin").hidden = false;
    return;
  }
  try {
    me = await api("GET", "/api/me");
  } catch (error) {
    pending = "";
    $("signin").hidden = false;
    $("work").hidden = true;
    $("signin-error").textContent = errorText(error);
    $("token").focus();
    return;
  }
  if (pending) localStorage.setItem("feed-token", pending);
  pending = "";
  $("signin").hidden = true;
  $("work").hidden = false;
  $("title").tabIndex = -1;
  $("title").focus();
  renderWho();
  const program = await fetch("/api/schedule").then((a) => (a.ok ? a.json() : { rooms: [] }));
  knowRooms(program.rooms);
  const known = program.rooms.length ? program.rooms : me.rooms.map((id) => ({ id, name: id }));
  rooms = me.role === "operator" ? known.filter((r) => me.rooms.includes(r.id)) : known;
  $("rooms").replaceChildren(...rooms.map(roomPanel));
  if (me.role !== "operator") {
    $("announce-panel").hidden = false;
    renderAudience();
  }
  feed = new FeedClient(["venue", ...rooms.map((r) => `room:${r.id}`)], pageOptions("console"));
  feed.addEventListener("change", render);
  feed.addEventListener("connection", render);
  feed.start();
  render();
  refreshWatch();
  setInterval(refreshWatch, WATCH_EVERY_MS);
}

function setup() {
  setLanguage(lang);
  renderTexts();
  languageButtons($("languages"), lang, (chosen) => {
    lang = chosen;
    renderTexts();
    if (me) {
      $("rooms").replaceChildren(...rooms.map(roomPanel));
      render();
    }
  });
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    pending = $("token").value.trim();
    signIn();
  });
  const form = $("announce");
  form.addEventListener("input", renderPreview);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = announcementText(form);
    const result = $("announce-result");
    if (!Object.keys(text).length) {
      report(result, "failed", "failed", { why: tr("no_text") });
      return;
    }
    const chosen = [...form.querySelectorAll("input[name=room]:checked")].map((i) => i.value);
    const everyone = form.elements.everyone.checked || !chosen.length;
    const minutes = Number(form.elements.expires.value);
    const body = { text, rooms: everyone ? [] : chosen, priority: form.elements.priority.value };
    if (minutes > 0 && body.priority !== "emergency") {
      body.expires_at = new Date(feed.now() + minutes * 60_000).toISOString();
    }
    const channels = body.rooms.length ? body.rooms.map((r) => `room:${r}`) : ["venue"];
    act(result, () => api("POST", "/api/announcements", body),
      (done) => () => channels.every((channel) => shows(channel, done.id)))
      .then(() => { if (result.dataset.state !== "failed") form.reset(); renderPreview(); });
  });
  signIn();
}

setup();
setInterval(render, 1000);
