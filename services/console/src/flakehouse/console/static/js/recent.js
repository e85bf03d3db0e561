// The last queries run, kept in this browser's localStorage: SQL, dataset, time zone and when.
// Never the token (it lives in an http-only cookie that scripts cannot read).

const KEY = 'flakehouse.recent-queries';
export const MAX_RECENT = 20;

function defaultStorage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: the list is simply empty
  }
}

export function loadRecent(storage = defaultStorage()) {
  try {
    const list = JSON.parse(storage?.getItem(KEY) ?? '[]');
    return Array.isArray(list) ? list.filter((entry) => typeof entry?.sql === 'string') : [];
  } catch {
    return [];
  }
}

// Adds a query at the top (moving it up when it is there already); returns the new list.
export function addRecent({ sql, dataset, tz, at }, storage = defaultStorage()) {
  const entry = { sql, dataset: dataset || '', tz: tz || '', at: at || new Date().toISOString() };
  const list = [entry, ...loadRecent(storage).filter((e) => e.sql !== sql || e.tz !== entry.tz)];
  list.length = Math.min(list.length, MAX_RECENT);
  try {
    storage?.setItem(KEY, JSON.stringify(list));
  } catch {
    // full or disabled: the list still shows for this page
  }
  return list;
}
