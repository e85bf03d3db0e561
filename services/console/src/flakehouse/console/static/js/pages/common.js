// What the question pages (flaky tests, test history, failure signatures) share: a time window,
// the URL that keeps their inputs, and the SQL behind them with a link into the builder.
import { el } from '../dom.js';
import { permalink } from '../permalink.js';

export const WINDOWS = [
  ['1d', 'last day'],
  ['7d', 'last 7 days'],
  ['30d', 'last 30 days'],
  ['90d', 'last 90 days'],
  ['all', 'all time'],
];

// A window ("7d", "all") as the builder's time range.
export function windowRange(window) {
  if (window === 'all') return { preset: 'all' };
  if (window === '7d' || window === '30d') return { preset: window };
  const days = Number.parseInt(window, 10);
  return { preset: 'custom', mode: 'relative', amount: days, unit: 'days' };
}

// The page's inputs in its URL (replaceState: a reload or a shared link shows the same thing).
export function keepInUrl(params) {
  const search = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== null && v !== undefined));
  history.replaceState(null, '', `${window.location.pathname}?${search}`);
}

// queries: [{title, sql}], shown each with an "Open in query builder" permalink.
export function showPageSql(root, queries, timeZone) {
  root.replaceChildren(
    ...queries.flatMap(({ title, sql }) => [
      el('h3', {}, title),
      el('pre', { dataset: { testid: 'page-sql' } }, el('code', {}, sql)),
      el('p', {}, el('a', { href: permalink(sql, timeZone), dataset: { testid: 'open-in-builder' } }, 'Open in query builder')),
    ]),
  );
}
