// The phone page works offline with what it last saw: the page and its files come from this
// cache when the network is away. The program is not this worker's: the page keeps it in its
// own cache ("feed-program") with its ETag and asks for it only when the feed says a new
// version exists, so this worker leaves that cache and GET /api/schedule alone.
const CACHE = "feed-v3";
const KEEP = new Set([CACHE, "feed-program"]);
const SLOW_MS = 3000;
const SHELL = [
  "/", "/manifest.webmanifest", "/static/screen.css", "/static/phone.css", "/static/phone.js",
  "/static/program.js", "/static/feed-client.js", "/static/i18n.js", "/static/ui.js",
  "/static/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => !KEEP.has(n)).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (!SHELL.includes(url.pathname)) return;
  // Network first, so a new version of the page is seen at once when online; but a network
  // that hangs (a crowded venue wifi) does not hold the page: past SLOW_MS the last copy is
  // used. The page itself is cached once, whatever its query string (?lang=...).
  const key = url.pathname === "/" ? "/" : event.request;
  const cached = () => caches.match(key, { ignoreSearch: url.pathname === "/" });
  const network = fetch(event.request).then((answer) => {
    if (!answer.ok) return cached().then((hit) => hit || answer); // a failing server: last copy
    const copy = answer.clone();
    caches.open(CACHE).then((cache) => cache.put(key, copy));
    return answer;
  });
  network.catch(() => {}); // answered below, whichever way it ends
  const slow = new Promise((done) => setTimeout(done, SLOW_MS))
    .then(cached).then((hit) => hit || network);
  event.respondWith(Promise.race([network, slow])
    .catch(() => cached().then((hit) => hit || Response.error())));
});
