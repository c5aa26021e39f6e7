// Interface strings in French, Arabic and English; the reader's language from ?lang=, then the
// last choice on this device, then the browser's. Arabic lays the page out right to left.

export const LANGUAGES = { fr: "Français", ar: "العربية", en: "English" };

const STRINGS = {
  en: {
    now: "Now", next: "Next", in_min: "in {n} min", left_min: "{n} min left",
    nothing_now: "No session right now", nothing_next: "Nothing more today",
    offline: "Offline since {t}: showing the last known state",
    paused: "Live updates paused since {t}",
    status_upcoming: "Upcoming", status_starting: "Starting", status_live: "Live",
    status_delayed: "Running late by {n} min", status_full: "Room full", status_ended: "Ended",
    status_cancelled: "Cancelled", status_moved: "Moved to {room}",
    emergency: "Emergency", announcements: "Announcements", unknown_room: "Unknown room",
  },
  fr: {
    now: "En ce moment", next: "Ensuite", in_min: "dans {n} min", left_min: "encore {n} min",
    nothing_now: "Pas de session en ce moment", nothing_next: "Plus rien aujourd'hui",
    offline: "Hors ligne depuis {t} : dernier état connu",
    paused: "Mises à jour suspendues depuis {t}",
    status_upcoming: "À venir", status_starting: "Ça commence", status_live: "En direct",
    status_delayed: "Retard de {n} min", status_full: "Salle complète", status_ended: "Terminé",
    status_cancelled: "Annulé", status_moved: "Déplacé en salle {room}",
    emergency: "Urgence", announcements: "Annonces", unknown_room: "Salle inconnue",
  },
  ar: {
    now: "الآن", next: "التالي", in_min: "بعد {n} دقيقة", left_min: "تبقى {n} دقيقة",
    nothing_now: "لا توجد جلسة حاليا", nothing_next: "لا شيء آخر اليوم",
    offline: "غير متصل منذ {t}: آخر حالة معروفة",
    paused: "التحديثات متوقفة منذ {t}",
    status_upcoming: "قادمة", status_starting: "تبدأ الآن", status_live: "مباشر",
    status_delayed: "تأخير {n} دقيقة", status_full: "القاعة ممتلئة", status_ended: "انتهت",
    status_cancelled: "ألغيت", status_moved: "نقلت إلى قاعة {room}",
    emergency: "طوارئ", announcements: "إعلانات", unknown_room: "قاعة غير معروفة",
  },
};

export function chooseLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  const stored = localStorage.getItem("feed-lang");
  const browser = (navigator.languages || [navigator.language || "en"]).map((l) => l.slice(0, 2));
  for (const lang of [asked, stored, ...browser]) {
    if (lang && STRINGS[lang]) return lang;
  }
  return "en";
}

export function setLanguage(lang) {
  localStorage.setItem("feed-lang", lang);
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
}

export function t(lang, key, values = {}) {
  const text = STRINGS[lang]?.[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}
