// How numbers, times and names are shown. Pure functions, no DOM. (The
// statuses' labels are in model.js.)

/** Milliseconds since the epoch, or NaN for a missing or bad timestamp. */
export function parseTime(iso) {
  if (!iso) return NaN;
  return Date.parse(iso);
}

/**
 * "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago".
 *
 *   relativeTime('2025-01-01T00:00:00Z', Date.parse('2025-01-01T00:00:12Z')) → '12 s ago'
 */
export function relativeTime(iso, nowMs) {
  const t = parseTime(iso);
  if (Number.isNaN(t)) return '—';
  const s = Math.round((nowMs - t) / 1000);
  if (s < 1) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** "45s", "12m", "1h 05m", "3d 4h". */
export function duration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** 950 → "950", 12345 → "12.3k", 1234567 → "1.2M". */
export function compactNumber(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  const abs = Math.abs(n);
  if (abs < 1000) return String(Math.round(n));
  if (abs < 1e6) return `${trim(n / 1e3)}k`;
  if (abs < 1e9) return `${trim(n / 1e6)}M`;
  return `${trim(n / 1e9)}B`;
}

function trim(x) {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1).replace(/\.0$/, '');
}

/** Every token the session used: input, output and both kinds of cache. */
export function totalTokens(tokens) {
  if (!tokens || typeof tokens !== 'object') return 0;
  let sum = 0;
  for (const key of ['input', 'output', 'cache_creation', 'cache_read']) {
    const v = tokens[key];
    if (typeof v === 'number' && Number.isFinite(v)) sum += v;
  }
  return sum;
}

/** null → "—", 0.004 → "<$0.01", 1.5 → "$1.50". */
export function cost(usd) {
  if (typeof usd !== 'number' || !Number.isFinite(usd)) return '—';
  if (usd > 0 && usd < 0.01) return '<$0.01';
  return `$${usd.toFixed(2)}`;
}

/** The last part of a project path: "/home/me/src/app" → "app". */
export function shortProject(project) {
  if (!project) return '—';
  const parts = String(project).split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : String(project);
}

/** "claude-sonnet-4-5-20250929" → "sonnet-4-5": the family and version, without the date. */
export function shortModel(model) {
  if (!model) return '—';
  return String(model).replace(/^claude-/, '').replace(/-\d{8}$/, '');
}

/** Whether `iso` falls on the same local calendar day as `nowMs`. */
export function isSameDay(iso, nowMs) {
  const t = parseTime(iso);
  if (Number.isNaN(t)) return false;
  const a = new Date(t);
  const b = new Date(nowMs);
  return (
    a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate()
  );
}

/** A URL safe to put in a link (http or https only), or null. */
export function safeHttpUrl(value) {
  if (typeof value !== 'string') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}
