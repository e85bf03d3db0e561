// Flaky tests (/flaky): the ranking of GET /api/v1/flaky, with the rule's parameters.
import * as api from '../api.js';
import { byTestId, setOptions, el } from '../dom.js';
import { startSession } from '../session.js';
import { createResults } from '../results.js';
import { createRunner } from '../runner.js';
import { fieldsOf, fillDatasets, browserTimeZone } from '../datasets.js';
import { suggestionSql } from '../sqlbuild.js';
import { flakyQueries } from '../flaky.js';
import { WINDOWS, keepInUrl, showPageSql } from './common.js';

const form = document.getElementById('flaky-form');
const dataset = byTestId('dataset-select');
const window_ = byTestId('flaky-window');
const branch = byTestId('flaky-branch');
const minRuns = byTestId('flaky-min-runs');
const zone = browserTimeZone();
const runner = createRunner({ status: byTestId('query-status'), announce: document.getElementById('announce'), cancelButton: byTestId('cancel') });

// Each test links to its history.
const results = createResults(document.getElementById('results-body'), {
  chart: false,
  caption: 'Flaky tests',
  link(row, column) {
    if (column > 1) return null;
    const params = new URLSearchParams({ dataset: dataset.value, classname: row[0] ?? '', name: row[1] ?? '', window: window_.value });
    return `/history?${params}`;
  },
});

setOptions(window_, WINDOWS.filter(([w]) => w !== '90d'));
const initial = new URLSearchParams(window.location.search);
window_.value = initial.get('since') ?? '7d';
branch.value = initial.get('branch') ?? '';
minRuns.value = initial.get('min_runs') ?? '2';

async function suggestBranches() {
  try {
    const fields = await fieldsOf(dataset.value);
    if (!fields.has('branch')) return;
    const answer = await api.query(suggestionSql(dataset.value, 'branch', { preset: 'all' }), { timeZone: zone });
    document.getElementById('branches').replaceChildren(...answer.rows.map((r) => el('option', { value: String(r[0]) })));
  } catch {
    // suggestions only
  }
}

async function run() {
  const params = { dataset: dataset.value, since: window_.value, branch: branch.value.trim(), min_runs: minRuns.value || '2', limit: '100' };
  keepInUrl({ dataset: params.dataset, since: params.since, branch: params.branch, min_runs: params.min_runs });
  try {
    const fields = await fieldsOf(params.dataset).catch(() => null);
    showPageSql(document.getElementById('page-sql'), flakyQueries(params.dataset, { since: params.since, branch: params.branch, fields }), zone);
    const outcome = await runner.run((signal) => api.flaky(params, { signal }));
    if (outcome.cancelled || outcome.superseded) return;
    await results.showAnswer(outcome.result, { dataset: params.dataset });
  } catch (error) {
    results.showError(error);
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  run();
});
dataset.addEventListener('change', suggestBranches);

let started = false;
startSession((session) => {
  fillDatasets(dataset, session.datasets, initial.get('dataset'));
  if (started || !session.datasets.length) return;
  started = true;
  suggestBranches();
  run();
});
