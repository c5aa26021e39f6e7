// Interface strings in French, Arabic and English; the reader's language from ?lang=, then the
// last choice on this device, then the browser's. Arabic lays the page out right to left.

export const LANGUAGES = { fr: "Français", ar: "العربية", en: "English" };

// A text is a string, or, for a count {n}, an object chosen by Intl.PluralRules: an exact
// "=N" first, then the count's category (zero, one, two, few, many, other: Arabic uses all six),
// then `relative`, a unit Intl.RelativeTimeFormat words in the reader's language ("in 5
// minutes"), then "other".
const STRINGS = {
  en: {
    now: "Now", next: "Next",
    in_min: { "=0": "now", relative: "minute" },
    left_min: { one: "{n} minute left", other: "{n} minutes left" },
    nothing_now: "No session right now", nothing_next: "Nothing more today",
    offline: "Offline since {t}: showing the last known state",
    paused: "Live updates paused since {t}",
    status_upcoming: "Upcoming", status_starting: "Starting", status_live: "Live",
    status_delayed: { other: "Running late by {n} min" }, status_full: "Room full",
    status_ended: "Ended", status_cancelled: "Cancelled", status_moved: "Moved to {room}",
    by_program: "Schedule", shown_on: "On now", shown_next: "Next at {t}",
    shown_over: "Over for today", shown_none: "Nothing scheduled",
    late_by: { other: "{n} min late" },
    emergency: "Emergency", announcements: "Announcements", unknown_room: "Unknown room",
    language: "Language", clock: "Clock",
  },
  fr: {
    now: "En ce moment", next: "Ensuite",
    in_min: { "=0": "maintenant", relative: "minute" },
    left_min: { one: "encore {n} minute", other: "encore {n} minutes" },
    nothing_now: "Pas de session en ce moment", nothing_next: "Plus rien aujourd'hui",
    offline: "Hors ligne depuis {t} : dernier état connu",
    paused: "Mises à jour suspendues depuis {t}",
    status_upcoming: "À venir", status_starting: "Ça commence", status_live: "En direct",
    status_delayed: { other: "Retard de {n} min" }, status_full: "Salle complète",
    status_ended: "Terminé", status_cancelled: "Annulé", status_moved: "Déplacé en salle {room}",
    by_program: "Programme", shown_on: "En cours", shown_next: "Prochaine à {t}",
    shown_over: "Terminé pour aujourd'hui", shown_none: "Rien au programme",
    late_by: { other: "{n} min de retard" },
    emergency: "Urgence", announcements: "Annonces", unknown_room: "Salle inconnue",
    language: "Langue", clock: "Horloge",
  },
  ar: {
    now: "الآن", next: "التالي",
    in_min: { "=0": "الآن", relative: "minute" },
    left_min: {
      zero: "لم تبق أي دقيقة", one: "تبقى دقيقة واحدة", two: "تبقى دقيقتان",
      few: "تبقى {n} دقائق", many: "تبقى {n} دقيقة", other: "تبقى {n} دقيقة",
    },
    nothing_now: "لا توجد جلسة حاليا", nothing_next: "لا شيء آخر اليوم",
    offline: "غير متصل منذ {t}: آخر حالة معروفة",
    paused: "التحديثات متوقفة منذ {t}",
    status_upcoming: "قادمة", status_starting: "تبدأ الآن", status_live: "مباشر",
    status_delayed: {
      zero: "متأخرة", one: "تأخير دقيقة واحدة", two: "تأخير دقيقتين",
      few: "تأخير {n} دقائق", many: "تأخير {n} دقيقة", other: "تأخير {n} دقيقة",
    },
    status_full: "القاعة ممتلئة", status_ended: "انتهت",
    status_cancelled: "ألغيت", status_moved: "نقلت إلى قاعة {room}",
    by_program: "حسب البرنامج", shown_on: "جارية الآن", shown_next: "التالية على الساعة {t}",
    shown_over: "انتهى برنامج اليوم", shown_none: "لا شيء في البرنامج",
    late_by: {
      zero: "متأخرة", one: "متأخرة دقيقة واحدة", two: "متأخرة دقيقتين",
      few: "متأخرة {n} دقائق", many: "متأخرة {n} دقيقة", other: "متأخرة {n} دقيقة",
    },
    emergency: "طوارئ", announcements: "إعلانات", unknown_room: "قاعة غير معروفة",
    language: "اللغة", clock: "الساعة",
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
  return fill(STRINGS[lang]?.[key] ?? STRINGS.en[key] ?? key, lang, values);
}

// Locales for Intl: Arabic as written in Morocco (the venue's), with Latin digits like the clock.
export function locale(lang) {
  return lang === "ar" ? "ar-MA" : lang;
}

const plurals = new Map();
const relatives = new Map();

function cached(map, key, make) {
  if (!map.has(key)) map.set(key, make());
  return map.get(key);
}

// `text` with its {names} filled in; a plural entry is first resolved for the count `n`.
export function fill(text, lang, values = {}) {
  let chosen = text;
  if (chosen && typeof chosen === "object") {
    const n = Number(values.n ?? 0);
    const category = cached(plurals, lang, () => new Intl.PluralRules(locale(lang))).select(n);
    chosen = chosen[`=${n}`] ?? chosen[category];
    if (chosen === undefined && text.relative) {
      chosen = cached(relatives, lang, () => new Intl.RelativeTimeFormat(locale(lang),
        { numeric: "always" })).format(n, text.relative);
    }
    chosen ??= text.other ?? "";
  }
  return String(chosen).replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}
