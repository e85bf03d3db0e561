// The builder's time range: presets, a custom relative range ("last N hours") and a custom
// absolute one (wall times in the query's time zone, which is how the service reads them).

export const PRESETS = [
  { id: '15m', label: 'Last 15 minutes', interval: '15 minutes' },
  { id: '1h', label: 'Last hour', interval: '1 hour' },
  { id: '24h', label: 'Last 24 hours', interval: '24 hours' },
  { id: '7d', label: 'Last 7 days', interval: '7 days' },
  { id: '30d', label: 'Last 30 days', interval: '30 days' },
  { id: 'all', label: 'All time' },
  { id: 'custom', label: 'Custom…' },
];

export const RELATIVE_UNITS = ['minutes', 'hours', 'days'];

// "7 days", "1 hour": the text of an SQL interval.
export function intervalText(amount, unit) {
  const n = Number(amount);
  return `${n} ${n === 1 ? unit.replace(/s$/, '') : unit}`;
}

// datetime-local gives "2026-11-20T09:14" (seconds only when typed); the service wants seconds.
function wallTime(value) {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d$/.test(value) ? `${value}:00` : value;
}

// The SQL conditions on `timestamp` that a range adds to WHERE (AND-ed at the top level, so
// that the service turns them into the scan's time range and skips whole segments).
export function rangeConditions(range) {
  if (!range || range.preset === 'all') return [];
  if (range.preset !== 'custom') {
    const preset = PRESETS.find((p) => p.id === range.preset);
    return preset ? [`timestamp >= now() - interval '${preset.interval}'`] : [];
  }
  if (range.mode === 'relative') {
    const n = Number(range.amount);
    if (!Number.isInteger(n) || n <= 0) return [];
    return [`timestamp >= now() - interval '${intervalText(n, range.unit)}'`];
  }
  const conditions = [];
  if (range.from) conditions.push(`timestamp >= '${wallTime(range.from)}'`);
  if (range.to) conditions.push(`timestamp < '${wallTime(range.to)}'`);
  return conditions;
}

// The range for "now() - interval '<text>'": a preset when one says the same, else relative.
export function rangeFromInterval(text) {
  const preset = PRESETS.find((p) => p.interval === text);
  if (preset) return { preset: preset.id };
  const match = /^(\d+) (minute|hour|day)s?$/.exec(text);
  if (!match || intervalText(match[1], `${match[2]}s`) !== text) return null;
  return { preset: 'custom', mode: 'relative', amount: Number(match[1]), unit: `${match[2]}s` };
}

// The range for absolute bounds read back from SQL, when a datetime-local box can show them.
export function rangeFromBounds(from, to) {
  const local = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?$/;
  if ((from && !local.test(from)) || (to && !local.test(to))) return null;
  const box = (value) => (value || '').replace(/^(.{16}):00$/, '$1'); // as datetime-local shows it
  return { preset: 'custom', mode: 'absolute', from: box(from), to: box(to) };
}

// The width of a time bucket that shows a range in a few dozen to a few hundred points.
export function bucketForRange(range) {
  const widths = { '15m': '1 minute', '1h': '1 minute', '24h': '1 hour', '7d': '1 hour', '30d': '1 day' };
  if (range.preset in widths) return widths[range.preset];
  if (range.preset === 'custom' && range.mode === 'relative') {
    const minutes = Number(range.amount) * { minutes: 1, hours: 60, days: 1440 }[range.unit];
    if (minutes <= 120) return '1 minute';
    if (minutes <= 2 * 1440) return '1 hour';
  }
  return '1 day';
}
