// One test's history (/history?dataset=D&classname=C&name=N): pass/fail per commit over time,
// durations, the latest failure messages and every run.
import * as api from '../api.js';
import { byTestId, setOptions, el, show } from '../dom.js';
import { startSession } from '../session.js';
import { createResults } from '../results.js';
import { createRunner } from '../runner.js';
import { fieldsOf, fillDatasets, browserTimeZone } from '../datasets.js';
import { quoteIdent, quoteString } from '../sql.js';
import { drawChart, clearChart } from '../chart.js';
import { perCommitSql, runsSql, unitOf, commitsChart, durationChart } from '../history.js';
import { WINDOWS, windowRange, keepInUrl, showPageSql } from './common.js';

const form = document.getElementById('history-form');
const dataset = byTestId('dataset-select');
const window_ = byTestId('history-window');
const classname = byTestId('history-classname');
const name = byTestId('history-name');
const summary = byTestId('history-summary');
const zone = browserTimeZone();
const runner = createRunner({ status: byTestId('query-status'), announce: document.getElementById('announce'), cancelButton: byTestId('cancel') });
const results = createResults(document.getElementById('results-body'), { chart: false, caption: 'Runs of the test' });
const charts = {
  commits: [byTestId('history-commits-chart'), byTestId('history-commits-note')],
  duration: [byTestId('history-duration-chart'), byTestId('history-duration-note')],
};

setOptions(window_, WINDOWS);
const initial = new URLSearchParams(window.location.search);
window_.value = initial.get('window') ?? '30d';
classname.value = initial.get('classname') ?? '';
name.value = initial.get('name') ?? '';

async function showChart([box, note], made, empty) {
  if (!made) {
    show(box, false);
    clearChart(box);
    note.textContent = empty;
    return;
  }
  show(box, true);
  note.textContent = '';
  await drawChart(box, made.option, made.summary);
}

function showFailures(answer) {
  const col = Object.fromEntries(answer.columns.map((c, i) => [c, i]));
  const failures = answer.rows.filter((r) => ['failed', 'error'].includes(r[col.status])).slice(0, 10);
  const list = byTestId('history-failures');
  if (!failures.length) {
    list.replaceChildren(el('li', { class: 'note' }, 'No failure in this window.'));
    return;
  }
  list.replaceChildren(
    ...failures.map((r) =>
      el('li', {},
        el('div', { class: 'meta' }, [r[col.timestamp], r[col.status], col.commit !== undefined && r[col.commit] !== null ? `commit ${r[col.commit]}` : null, col.branch !== undefined && r[col.branch] !== null ? `branch ${r[col.branch]}` : null].filter(Boolean).join(' · ')),
        el('pre', {}, r[col.message] ?? '(no message)'))),
  );
}

// Suggestions for the class and test names, most frequent first.
async function suggest() {
  try {
    const fields = await fieldsOf(dataset.value);
    const from = quoteIdent(dataset.value);
    if (fields.has('classname')) {
      const answer = await api.query(`SELECT classname, count(*) FROM ${from} WHERE classname IS NOT NULL GROUP BY classname ORDER BY count(*) DESC LIMIT 50`, { timeZone: zone });
      document.getElementById('classnames').replaceChildren(...answer.rows.map((r) => el('option', { value: String(r[0]) })));
    }
    const where = classname.value && fields.has('classname') ? `classname = ${quoteString(classname.value)}` : 'name IS NOT NULL';
    const answer = await api.query(`SELECT name, count(*) FROM ${from} WHERE ${where} GROUP BY name ORDER BY count(*) DESC LIMIT 50`, { timeZone: zone });
    document.getElementById('names').replaceChildren(...answer.rows.map((r) => el('option', { value: String(r[0]) })));
  } catch {
    // suggestions only
  }
}

async function run() {
  if (!name.value.trim()) {
    summary.textContent = 'Type a test name (the class name narrows it), or follow a test from the Flaky tests page.';
    return;
  }
  const window = window_.value;
  keepInUrl({ dataset: dataset.value, classname: classname.value, name: name.value, window });
  try {
    const fields = await fieldsOf(dataset.value);
    const test = { dataset: dataset.value, classname: classname.value, name: name.value, range: windowRange(window), fields };
    const unit = unitOf(fields);
    const queries = [
      { title: `Pass and fail per ${unit.label}`, sql: perCommitSql(test) },
      { title: 'Runs', sql: runsSql(test) },
    ];
    showPageSql(document.getElementById('page-sql'), queries, zone);
    const outcome = await runner.run((signal) =>
      Promise.all(queries.map((q) => api.query(q.sql, { timeZone: zone, signal }))),
    );
    if (outcome.cancelled || outcome.superseded) return;
    const [perCommit, runs] = outcome.result;
    await results.showAnswer(runs, { dataset: test.dataset });
    showFailures(runs);
    const commits = perCommit.rows.length ? commitsChart(perCommit, { timeZone: zone, unitLabel: unit.label }) : null;
    summary.textContent = commits
      ? `${perCommit.rows.length} ${unit.label}s in this window (${unit.label === 'commit' ? 'newest 200' : 'up to 200'}): ` +
        `${commits.counts.passed} passed, ${commits.counts.failed} failed, ${commits.counts.flaky} flaky, ${commits.counts.skipped} only skipped; ${runs.rows.length} runs shown below.`
      : 'No run of this test in this window.';
    await showChart(charts.commits, commits, 'No runs to chart.');
    await showChart(charts.duration, durationChart(runs, { timeZone: zone }), 'No durations to chart.');
  } catch (error) {
    results.showError(error);
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  run();
});
dataset.addEventListener('change', suggest);
classname.addEventListener('change', suggest);

let started = false;
startSession((session) => {
  fillDatasets(dataset, session.datasets, initial.get('dataset'));
  if (started || !session.datasets.length) return;
  started = true;
  suggest();
  run();
});
