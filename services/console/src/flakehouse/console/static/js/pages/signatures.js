// Failure signatures (/signatures): failures grouped by the `signature` field (a normalised
// message, computed at ingest), or by `message` for datasets ingested before it existed.
import * as api from '../api.js';
import { byTestId, setOptions, show } from '../dom.js';
import { startSession } from '../session.js';
import { createResults } from '../results.js';
import { createRunner } from '../runner.js';
import { fieldsOf, fillDatasets, browserTimeZone } from '../datasets.js';
import { quoteIdent } from '../sql.js';
import { buildSql, newState } from '../sqlbuild.js';
import { rangeConditions } from '../timerange.js';
import { permalink } from '../permalink.js';
import { WINDOWS, windowRange, keepInUrl, showPageSql } from './common.js';

const form = document.getElementById('signatures-form');
const dataset = byTestId('dataset-select');
const window_ = byTestId('signatures-window');
const note = byTestId('signature-note');
const zone = browserTimeZone();
const runner = createRunner({ status: byTestId('query-status'), announce: document.getElementById('announce'), cancelButton: byTestId('cancel') });
let current = null; // {dataset, key, range, fields} of the answer shown

// The builder query that lists the failures of one signature.
function failuresSql(value) {
  const { key, range, fields } = current;
  const state = newState(current.dataset);
  state.aggregates = [];
  state.columns = ['timestamp', 'classname', 'name', 'status', 'message'].filter((f) => f === 'timestamp' || fields.has(f));
  state.range = range;
  state.where = [
    { field: 'status', op: 'in', value: 'failed, error', join: 'AND' },
    { field: key, op: '=', value: String(value), join: 'AND' },
  ];
  state.orderBy = 'timestamp';
  state.limit = 100;
  return buildSql(state, fields);
}

const results = createResults(document.getElementById('results-body'), {
  chart: false,
  caption: 'Failure signatures',
  link(row, column) {
    if (column === 0) return permalink(failuresSql(row[0]), zone);
    if (column === 5) return `/history?${new URLSearchParams({ dataset: current.dataset, name: row[5] })}`;
    return null;
  },
});

setOptions(window_, WINDOWS);
const initial = new URLSearchParams(window.location.search);
window_.value = initial.get('window') ?? '7d';

function signaturesSql(ds, key, range) {
  const where = ["status IN ('failed', 'error')", ...rangeConditions(range)];
  return [
    `SELECT ${quoteIdent(key)}, count(*) AS failures, count(DISTINCT name) AS tests,`,
    '       min(timestamp) AS first_seen, max(timestamp) AS last_seen, min(name) AS example_test',
    `FROM ${quoteIdent(ds)}`,
    `WHERE ${where.join('\n  AND ')}`,
    `GROUP BY ${quoteIdent(key)}`,
    'ORDER BY failures DESC',
    'LIMIT 100',
  ].join('\n');
}

async function run() {
  keepInUrl({ dataset: dataset.value, window: window_.value });
  try {
    const fields = await fieldsOf(dataset.value);
    // Datasets ingested before signatures existed have none: their raw messages stand in.
    const key = fields.has('signature') ? 'signature' : 'message';
    note.textContent = key === 'message'
      ? `The dataset ${dataset.value} has no signature field (it was ingested before signatures were computed): failures are grouped by their raw message instead.`
      : '';
    show(note, key === 'message');
    const range = windowRange(window_.value);
    const sql = signaturesSql(dataset.value, key, range);
    showPageSql(document.getElementById('page-sql'), [{ title: `Failures by ${key}`, sql }], zone);
    const outcome = await runner.run((signal) => api.query(sql, { timeZone: zone, signal }));
    if (outcome.cancelled || outcome.superseded) return;
    current = { dataset: dataset.value, key, range, fields };
    await results.showAnswer(outcome.result, { dataset: dataset.value });
  } catch (error) {
    results.showError(error);
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  run();
});

let started = false;
startSession((session) => {
  fillDatasets(dataset, session.datasets, initial.get('dataset'));
  if (started || !session.datasets.length) return;
  started = true;
  run();
});
