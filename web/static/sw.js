// The phone page works offline with what it last saw: the page and its files come from this
// cache when the network is away; the program is fetched fresh when possible, else from here.
const CACHE = "feed-v2";
const SHELL = [
  "/", "/manifest.webmanifest", "/static/screen.css", "/static/phone.css", "/static/phone.js",
  "/static/feed-client.js", "/static/i18n.js", "/static/ui.js", "/static/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  const cacheable = SHELL.includes(url.pathname) || url.pathname === "/api/schedule";
  if (!cacheable) return;
  // Network first, so a new program or a new version of the page is seen at once when online.
  // The page itself is cached once, whatever its query string (?lang=...).
  const key = url.pathname === "/" ? "/" : event.request;
  const cached = () => caches.match(key, { ignoreSearch: url.pathname === "/" });
  event.respondWith(fetch(event.request).then((answer) => {
    if (!answer.ok) return cached().then((hit) => hit || answer); // a failing server: last copy
    const copy = answer.clone();
    caches.open(CACHE).then((cache) => cache.put(key, copy));
    return answer;
  }).catch(() => cached().then((hit) => hit || Response.error())));
});
