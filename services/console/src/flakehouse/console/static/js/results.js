// Where an answer is shown: the partial-answer banner, freshness and truncation notes, the
// query's stats, the chart, the table with its CSV export; or the error, pointing into the SQL.
import { el, show } from './dom.js';
import { formatDuration, formatInt } from './format.js';
import { describeError } from './api.js';
import { resultTable, MAX_TABLE_ROWS } from './table.js';
import { toCsv, csvFilename, downloadCsv } from './csv.js';
import { chartSpec, chartOption, summarize } from './charts.js';
import { drawChart, clearChart } from './chart.js';

export function partialText(missing) {
  const parts = (missing ?? []).map((m) => `${m.dataset}/${m.partition} (${m.reason})`);
  return `Partial answer: ${parts.join(', ') || 'some partitions did not answer'}. The rows of these partitions are missing.`;
}

export function freshnessText(freshness) {
  const records = freshness?.records_behind ?? 0;
  const ms = freshness?.behind_ms ?? 0;
  if (!records && !ms) return '';
  return `Stale answer: up to ${formatInt(records)} records and ${(ms / 1000).toFixed(1)} s behind the newest events.`;
}

export function statsText(answer) {
  const s = answer.stats;
  if (!s || s.elapsed_ms === undefined) return ''; // the flaky ranking (two queries) has none
  const parts = [
    formatDuration(s.elapsed_ms),
    `${formatInt(s.rows_scanned)} rows scanned`,
    `${formatInt(s.rows_matched)} matched`,
    `${s.partitions} partition${s.partitions === 1 ? '' : 's'}`,
    `${formatInt(s.segments_skipped)} segments skipped`,
    `hedged ${s.hedged}`,
  ];
  const nodes = (answer.nodes ?? []).map(
    (n) => `${n.node_id} (partitions ${n.partitions.join(', ')}; ${formatDuration(n.elapsed_ms)}${n.errors?.length ? `; ${n.errors.length} errors` : ''})`,
  );
  if (nodes.length) parts.push(`nodes: ${nodes.join(', ')}`);
  return parts.join(' · ');
}

// The SQL line an error points to, and a caret under its column (tabs kept, so it lines up).
export function caretLines(sql, line, column) {
  const text = sql.split('\n')[line - 1];
  if (text === undefined) return null;
  const pad = text.slice(0, Math.max(0, column - 1)).replace(/[^\t]/g, ' ');
  return `${text}\n${pad}^`;
}

// options: link(row, column) for table cells, chart (false: no chart here), testIds.
export function createResults(root, { link, chart = true, caption } = {}) {
  const partial = el('div', { class: 'banner warning', role: 'alert', dataset: { testid: 'partial-banner' }, hidden: true });
  const error = el('div', { class: 'banner error', role: 'alert', dataset: { testid: 'error-message' }, hidden: true });
  const freshness = el('p', { class: 'note', dataset: { testid: 'freshness' }, hidden: true });
  const truncated = el('p', { class: 'note', dataset: { testid: 'truncated' }, hidden: true });
  const stats = el('p', { class: 'stats', dataset: { testid: 'query-stats' } });
  const chartBox = el('div', { class: 'chart', dataset: { testid: 'chart' }, hidden: true });
  const chartNote = el('p', { class: 'hint', hidden: true });
  const count = el('span', { class: 'row-count' });
  const csvButton = el('button', { type: 'button', class: 'secondary', dataset: { testid: 'csv-export' }, disabled: true }, 'Download CSV');
  const tableWrap = el('div', { class: 'table-wrap' });
  const tools = el('div', { class: 'table-tools', hidden: true }, count, csvButton);
  root.replaceChildren(...[partial, error, freshness, truncated, stats, chart && chartBox, chart && chartNote, tools, tableWrap].filter(Boolean));

  let current = null;
  csvButton.addEventListener('click', () => {
    if (!current) return;
    const { answer, dataset } = current;
    downloadCsv(csvFilename(dataset), toCsv(answer.columns, answer.rows, answer.types));
  });

  function clear() {
    current = null;
    for (const node of [partial, error, freshness, truncated, tools, chartNote]) show(node, false);
    show(chartBox, false);
    clearChart(chartBox);
    tableWrap.replaceChildren();
    stats.textContent = '';
    csvButton.disabled = true;
  }

  // answer: the API's JSON. dataset names the CSV file; hint shapes the chart (charts.js).
  async function showAnswer(answer, { dataset, hint = null, timeZone = '', drawChartToo = true } = {}) {
    clear();
    current = { answer, dataset };
    show(partial, Boolean(answer.partial));
    if (answer.partial) partial.textContent = partialText(answer.missing_partitions);
    freshness.textContent = freshnessText(answer.freshness);
    show(freshness, Boolean(freshness.textContent));
    show(truncated, Boolean(answer.truncated));
    truncated.textContent = answer.truncated
      ? `Truncated: only the first ${formatInt(answer.rows.length)} rows are shown (the default LIMIT); more rows matched. Add a LIMIT to ask for more.`
      : '';
    stats.textContent = statsText(answer);
    const n = answer.rows.length;
    count.textContent = `${formatInt(n)} row${n === 1 ? '' : 's'}${n > MAX_TABLE_ROWS ? ` (the table shows the first ${formatInt(MAX_TABLE_ROWS)}; the CSV has them all)` : ''}`;
    show(tools, true);
    csvButton.disabled = false;
    tableWrap.replaceChildren(resultTable(answer, { link, caption }));
    if (chart && drawChartToo) await showChart(chartSpec(answer, hint), timeZone);
  }

  async function showChart(spec, timeZone) {
    if (!spec) {
      show(chartBox, false);
      clearChart(chartBox);
      show(chartNote, false);
      return;
    }
    const summary = summarize(spec, timeZone);
    show(chartBox, true);
    chartNote.textContent = spec.note ? `Chart: ${spec.note}.` : '';
    show(chartNote, Boolean(spec.note));
    await drawChart(chartBox, chartOption(spec, { timeZone, summary }), summary);
  }

  // Draws a chart made elsewhere (the duration heatmap) in the chart area.
  async function showCustomChart(option, summary) {
    show(chartBox, true);
    show(chartNote, false);
    await drawChart(chartBox, option, summary);
  }

  // A sentence in place of a chart (no chart can be drawn, or its query failed).
  function showChartMessage(text) {
    show(chartBox, false);
    clearChart(chartBox);
    chartNote.textContent = text;
    show(chartNote, true);
  }

  function showError(err, { sql } = {}) {
    clear();
    const message = el('p', {}, describeError(err));
    const where = err.line && err.column && sql ? caretLines(sql, err.line, err.column) : null;
    error.replaceChildren(message, where ? el('pre', { class: 'caret', dataset: { testid: 'error-caret' } }, where) : '');
    show(error, true);
  }

  return { showAnswer, showError, showChart, showCustomChart, showChartMessage, clear, get answer() { return current?.answer ?? null; } };
}
