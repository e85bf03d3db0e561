// The query builder page (/): the builder, the SQL it writes (editable), the answer, permalinks
// and recent queries.
import * as api from '../api.js';
import { el, byTestId, setOptions, show } from '../dom.js';
import { startSession } from '../session.js';
import { createBuilder } from '../builder.js';
import { buildSql, heatmapSql, isAggregateQuery, newState, suggestionSql } from '../sqlbuild.js';
import { fromSql, datasetOf, Unreadable } from '../sqlparse.js';
import { sameStatement } from '../sqltokens.js';
import { createResults } from '../results.js';
import { createRunner } from '../runner.js';
import { createShare } from '../share.js';
import { fieldsOf, fillDatasets, browserTimeZone, timeZones } from '../datasets.js';
import { readPermalink, permalink } from '../permalink.js';
import { loadRecent, addRecent } from '../recent.js';
import { formatCell } from '../format.js';
import { bucketForRange } from '../timerange.js';
import { durationBucketSql, heatmapSpec, heatmapOption, summarizeHeatmap } from '../charts.js';
import { startUploads } from '../upload.js';

const CANNOT_SHOW = 'Note: the builder cannot show this query; the SQL is what runs.';

const editor = byTestId('sql-editor');
const note = byTestId('builder-note');
const zone = byTestId('time-zone');
const chartView = byTestId('chart-view');
const heatmapLink = byTestId('heatmap-sql');
const results = createResults(document.getElementById('results-body'));
const runner = createRunner({ status: byTestId('query-status'), announce: document.getElementById('announce'), cancelButton: byTestId('cancel') });
const share = createShare(document.getElementById('share'));
let datasets = [];
let started = false;
let builderShowsSql = true; // false while the SQL is something the builder cannot show

const suggestions = new Map();
const builder = createBuilder(document.getElementById('builder'), {
  onChange: builderChanged,
  suggest(field) {
    const { dataset, range } = builder.state;
    const key = JSON.stringify([dataset, field, range]);
    if (!suggestions.has(key)) {
      const request = api.query(suggestionSql(dataset, field, range), { timeZone: zone.value }).then((answer) =>
        answer.rows.map((row) => formatCell(row[0], answer.types?.[0], { grouping: false })),
      );
      request.catch(() => suggestions.delete(key));
      suggestions.set(key, request);
    }
    return suggestions.get(key);
  },
});

function setNote(text) {
  note.textContent = text;
  show(note, Boolean(text));
}

function sqlChanged() {
  share.update(editor.value, zone.value);
}

async function builderChanged(state, what) {
  if (what === 'dataset') {
    try {
      builder.setFields(await fieldsOf(state.dataset));
    } catch (error) {
      results.showError(error);
    }
  }
  editor.value = buildSql(builder.state, builder.fields);
  builderShowsSql = true;
  setNote('');
  sqlChanged();
}

// The SQL as typed → the builder, when it can show it.
async function readSql(sql) {
  const dataset = datasetOf(sql);
  if (!dataset || !datasets.some((d) => d.name === dataset)) {
    builderShowsSql = false;
    return setNote(CANNOT_SHOW);
  }
  try {
    const fields = await fieldsOf(dataset);
    if (editor.value !== sql) return; // typed on since
    builder.set(fromSql(sql, fields), fields);
    builderShowsSql = true;
    setNote('');
  } catch (error) {
    if (!(error instanceof Unreadable) && !(error instanceof api.ApiError)) throw error;
    builderShowsSql = false;
    setNote(CANNOT_SHOW);
  }
}

let typing = null;
editor.addEventListener('input', () => {
  sqlChanged();
  clearTimeout(typing);
  typing = setTimeout(() => {
    typing = null;
    readSql(editor.value);
  }, 250);
});

// What the chart needs to know about the query, when the builder wrote it.
function chartHint() {
  const state = builder.state;
  if (!builderShowsSql || !sameStatement(buildSql(state, builder.fields), editor.value)) return null;
  if (!isAggregateQuery(state)) return { raw: true };
  return { keys: (state.bucket ? 1 : 0) + state.groupBy.filter(Boolean).length, bucket: Boolean(state.bucket) };
}

// Points the SQL editor at where the error is: selects the word there. `sql` is the text that
// ran (the editor's, trimmed), the service's line and column count in it.
function selectErrorInEditor(sql, line, column) {
  const lines = sql.split('\n');
  if (!line || !column || line > lines.length) return;
  const lead = editor.value.length - editor.value.trimStart().length;
  const start = lead + lines.slice(0, line - 1).reduce((n, text) => n + text.length + 1, 0) + column - 1;
  const word = /^[\w."]+/.exec(editor.value.slice(start));
  editor.focus();
  editor.setSelectionRange(start, start + Math.max(1, word ? word[0].length : 1));
}

async function run({ push = true } = {}) {
  const sql = editor.value.trim();
  if (!sql) {
    setNote('Write a query first, or build one above.');
    return;
  }
  if (typing !== null) {
    clearTimeout(typing); // typed and ran at once: bring the builder up to date first
    typing = null;
    await readSql(editor.value);
  }
  const timeZone = zone.value;
  const dataset = datasetOf(sql) ?? builder.state.dataset;
  const url = permalink(sql, timeZone);
  if (push && url !== window.location.pathname + window.location.search) history.pushState({ sql, timeZone }, '', url);
  renderRecent(addRecent({ sql, dataset, tz: timeZone }));
  const hint = chartHint();
  const heatmap = chartView.value === 'heatmap';
  let outcome;
  try {
    outcome = await runner.run((signal) => api.query(sql, { timeZone, signal }));
  } catch (error) {
    results.showError(error, { sql });
    if (error.line && error.column) selectErrorInEditor(sql, error.line, error.column);
    return;
  }
  if (outcome.cancelled || outcome.superseded) return;
  await results.showAnswer(outcome.result, { dataset, hint, timeZone, drawChartToo: !heatmap });
  if (heatmap) await runHeatmap();
}

// The duration heatmap: its own query over the builder's dataset, range and conditions.
async function runHeatmap() {
  const state = builder.state;
  show(heatmapLink, false);
  if (!builder.fields.has('duration')) {
    results.showChartMessage('This dataset has no duration field: no heatmap to draw.');
    return;
  }
  const width = state.bucket || bucketForRange(state.range);
  const sql = heatmapSql(state, builder.fields, width, durationBucketSql());
  heatmapLink.href = permalink(sql, zone.value);
  show(heatmapLink, true);
  try {
    const answer = await api.query(sql, { timeZone: zone.value });
    const spec = heatmapSpec(answer);
    const summary = summarizeHeatmap(spec, zone.value);
    await results.showCustomChart(heatmapOption(spec, { timeZone: zone.value, summary }), summary);
  } catch (error) {
    results.showChartMessage(`The heatmap's query failed: ${api.describeError(error)}`);
  }
}

chartView.addEventListener('change', async () => {
  const answer = results.answer;
  if (!answer) return;
  if (chartView.value === 'heatmap') await runHeatmap();
  else {
    show(heatmapLink, false);
    await results.showAnswer(answer, { dataset: builder.state.dataset, hint: chartHint(), timeZone: zone.value });
  }
});

function renderRecent(list = loadRecent()) {
  const items = list.map((entry) =>
    el('li', {},
      el('button', { type: 'button', class: 'recent', dataset: { testid: 'recent-query' }, onclick: () => loadSql(entry.sql, entry.tz) },
        el('code', {}, entry.sql.replace(/\s+/g, ' ')),
        el('span', { class: 'meta' }, `${entry.dataset} · ${new Date(entry.at).toLocaleString()}${entry.tz ? ` · ${entry.tz}` : ''}`))));
  byTestId('recent-queries').replaceChildren(...items);
  show(byTestId('recent-empty'), !list.length);
}

function setZone(name) {
  if (!name) return;
  if (![...zone.options].some((o) => o.value === name)) zone.append(new Option(name, name));
  zone.value = name;
}

async function loadSql(sql, timeZone) {
  editor.value = sql;
  setZone(timeZone);
  sqlChanged();
  await readSql(sql);
}

async function openPermalink() {
  const link = readPermalink(window.location.search);
  if (!link) return false;
  await loadSql(link.sql, link.tz);
  await run({ push: false });
  return true;
}

async function onSignedIn(session) {
  datasets = session.datasets;
  fillUploadDatasets();
  const select = byTestId('dataset-select');
  const dataset = fillDatasets(select, datasets, builder.state?.dataset);
  if (started) {
    // Signed in again, maybe with another token: keep the query if it may still read it.
    if (!datasets.some((d) => d.name === builder.state.dataset) && datasets.length) {
      builder.state.dataset = dataset;
      builderChanged(builder.state, 'dataset');
    }
    return;
  }
  started = true;
  if (!datasets.length) {
    results.showError({ message: 'This token may read no dataset: ask for a token with read on one.' });
    return;
  }
  // The default query shows at once; the fields (for the builder's lists) follow.
  builder.set(newState(dataset), new Map([['timestamp', 'timestamp']]));
  if (await openPermalink()) return;
  editor.value = buildSql(builder.state, builder.fields);
  sqlChanged();
  const shown = editor.value;
  try {
    builder.setFields(await fieldsOf(dataset));
  } catch (error) {
    results.showError(error);
  }
  if (editor.value === shown && builderShowsSql) {
    editor.value = buildSql(builder.state, builder.fields); // unless the person typed meanwhile
    sqlChanged();
  }
}

setOptions(zone, timeZones().map((z) => [z, z]));
setZone(browserTimeZone());
zone.addEventListener('change', sqlChanged);
renderRecent();

document.getElementById('builder').addEventListener('submit', (event) => {
  event.preventDefault();
  run();
});
byTestId('run').addEventListener('click', () => run());
// Ctrl-Enter (Cmd-Enter on a Mac) runs the query from anywhere on the page.
document.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    run();
  }
});
window.addEventListener('popstate', () => started && openPermalink());

// After an upload, the session's datasets again: a first upload may have created one, which
// the query service lists once its catalog caught up (well under a second).
startUploads(byTestId('upload-form'), {
  async onUploaded(name) {
    for (let attempt = 0; attempt < 10; attempt += 1) {
      const session = await api.getSession();
      datasets = session.datasets ?? datasets;
      if (datasets.some((d) => d.name === name)) break;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    fillDatasets(byTestId('dataset-select'), datasets, builder.state.dataset);
    fillUploadDatasets();
  },
});

function fillUploadDatasets() {
  document.getElementById('upload-datasets').replaceChildren(...datasets.map((d) => el('option', { value: d.name })));
}

startSession(onSignedIn);
