// The result table: the answer's rows in its order until a header is clicked, then sorted by
// that column (the displayed rows only: the answer, and the CSV, keep the server's order).
import { el } from './dom.js';
import { formatCell } from './format.js';

export const MAX_TABLE_ROWS = 5000;

// Numbers < strings < bools, NULLs last either way; times by their instant (offsets may differ).
function compareValues(a, b, type) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  if (type === 'timestamp' && typeof a === 'string' && typeof b === 'string') {
    const diff = Date.parse(a.replace(/(\.\d{3})\d+/, '$1')) - Date.parse(b.replace(/(\.\d{3})\d+/, '$1'));
    if (diff) return diff;
  }
  const rank = (v) => ({ number: 0, string: 1, boolean: 2 })[typeof v] ?? 3;
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (typeof a === 'number') return a - b || (Number.isNaN(a) ? 1 : Number.isNaN(b) ? -1 : 0);
  if (typeof a === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return Number(a) - Number(b);
}

// answer: {columns, rows, types}; link(row, columnIndex) → an href for that cell, or null.
export function resultTable(answer, { link = () => null, caption = 'Query results', testId = 'result-table' } = {}) {
  const { columns, rows } = answer;
  const types = answer.types ?? [];
  const numeric = types.map((t) => t === 'int' || t === 'float');
  let sort = null; // {column, direction: 1 | -1}

  const table = el('table', { class: 'result-table', dataset: { testid: testId } });
  table.append(el('caption', { class: 'visually-hidden' }, caption));
  const headRow = el('tr');
  const body = el('tbody');
  table.append(el('thead', {}, headRow), body);

  const headers = columns.map((name, i) => {
    const arrow = el('span', { class: 'sort-arrow', 'aria-hidden': 'true' });
    const button = el('button', { type: 'button', class: 'sort', dataset: { testid: 'sort-column' }, onclick: () => sortBy(i) }, name, arrow);
    const th = el('th', { scope: 'col', class: numeric[i] ? 'num' : null }, button);
    headRow.append(th);
    return { th, arrow };
  });

  function sortBy(column) {
    sort = { column, direction: sort?.column === column ? -sort.direction : 1 };
    headers.forEach(({ th, arrow }, i) => {
      if (i === column) th.setAttribute('aria-sort', sort.direction === 1 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
      arrow.textContent = i === column ? (sort.direction === 1 ? ' ▲' : ' ▼') : '';
    });
    renderBody();
  }

  function renderBody() {
    let shown = rows.slice(0, MAX_TABLE_ROWS);
    if (sort) {
      const { column, direction } = sort;
      // Stable: equal values keep the answer's order. NULLs stay last in both directions.
      shown = rows
        .map((row, index) => ({ row, index }))
        .sort((x, y) => {
          const a = x.row[column];
          const b = y.row[column];
          const nulls = (a === null) - (b === null);
          return nulls || direction * compareValues(a, b, types[column]) || x.index - y.index;
        })
        .slice(0, MAX_TABLE_ROWS)
        .map(({ row }) => row);
    }
    body.replaceChildren(
      ...shown.map((row) =>
        el(
          'tr',
          {},
          row.map((value, i) => {
            const text = formatCell(value, types[i]);
            const href = value === null ? null : link(row, i);
            return el(
              'td',
              { class: [numeric[i] && 'num', value === null && 'null'].filter(Boolean).join(' ') || null },
              href ? el('a', { href }, text) : text,
            );
          }),
        ),
      ),
    );
  }

  renderBody();
  return table;
}
