import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chartSpec, heatmapSpec, durationBucketSql, summarize, timeMs, MAX_SERIES } from '../../src/flakehouse/console/static/js/charts.js';
import { flakyQueries, sinceInterval } from '../../src/flakehouse/console/static/js/flaky.js';
import { outcome, perCommitSql, runsSql } from '../../src/flakehouse/console/static/js/history.js';
import { heatmapSql, newState } from '../../src/flakehouse/console/static/js/sqlbuild.js';
import { caretLines, partialText, freshnessText } from '../../src/flakehouse/console/static/js/results.js';

const t = (day) => `2026-11-${String(day).padStart(2, '0')}T00:00:00.000000+01:00`;

test('times as received (microseconds, offsets) become instants', () => {
  assert.equal(timeMs('2026-11-20T09:14:03.512345Z'), Date.UTC(2026, 10, 20, 9, 14, 3, 512));
  assert.equal(timeMs('2026-11-20T00:00:00.000000+01:00'), Date.UTC(2026, 10, 19, 23));
});

test('a time bucket gives a line per aggregate', () => {
  const spec = chartSpec(
    { columns: ['bucket', 'count(*)', 'p95(duration)'], types: ['timestamp', 'int', 'float'], rows: [[t(2), 5, 1.5], [t(1), 3, 0.5]] },
    { keys: 1, bucket: true },
  );
  assert.equal(spec.kind, 'line');
  assert.deepEqual(spec.series.map((s) => s.name), ['count(*)', 'p95(duration)']);
  assert.deepEqual(spec.series[0].data.map((d) => d[1]), [3, 5], 'sorted by time');
  assert.match(summarize(spec, 'Europe/Paris'), /^Line chart over time, 2026-11-01 00:00 to 2026-11-02 00:00/);
});

test('a time bucket and a second key give a line per group, the 10 largest', () => {
  const rows = [];
  for (let g = 0; g < 12; g++) rows.push([t(1), `suite${g}`, g + 1], [t(2), `suite${g}`, g + 1]);
  const spec = chartSpec({ columns: ['bucket', 'suite', 'count(*)'], types: ['timestamp', 'string', 'int'], rows }, { keys: 2, bucket: true });
  assert.equal(spec.series.length, MAX_SERIES);
  assert.equal(spec.series[0].name, 'suite11');
  assert.match(spec.note, /10 largest of 12/);
});

test('groups without a bucket give bars; rows and single rows give no chart', () => {
  const bars = chartSpec({ columns: ['status', 'count(*)'], types: ['string', 'int'], rows: [['passed', 10], [null, 2]] }, { keys: 1, bucket: false });
  assert.equal(bars.kind, 'bar');
  assert.deepEqual(bars.categories, ['passed', 'NULL']);
  assert.equal(chartSpec({ columns: ['count(*)'], types: ['int'], rows: [[4]] }, { keys: 0, bucket: false }), null);
  assert.equal(chartSpec({ columns: ['name', 'duration'], types: ['string', 'float'], rows: [['a', 1]] }, { raw: true }), null);
});

test('without the builder, leading non-numeric columns are the keys', () => {
  assert.equal(chartSpec({ columns: ['day', 'n'], types: ['timestamp', 'int'], rows: [[t(1), 1]] }).kind, 'line');
  assert.equal(chartSpec({ columns: ['status', 'n'], types: ['string', 'int'], rows: [['a', 1]] }).kind, 'bar');
  assert.equal(chartSpec({ columns: ['name'], types: ['string'], rows: [['a']] }), null);
});

test('the duration heatmap: its query and its cells', () => {
  assert.equal(durationBucketSql(), 'CASE WHEN duration < 0.001 THEN 0 WHEN duration < 0.01 THEN 1 WHEN duration < 0.1 THEN 2 WHEN duration < 1 THEN 3 WHEN duration < 10 THEN 4 WHEN duration < 60 THEN 5 ELSE 6 END');
  const state = { ...newState('ci'), where: [{ field: 'status', op: '=', value: 'failed', join: 'AND' }, { field: 'status', op: '=', value: 'error', join: 'OR' }] };
  assert.equal(
    heatmapSql(state, new Map([['status', 'string']]), '1 hour', 'CASE … END'),
    "SELECT time_bucket(timestamp, INTERVAL '1 hour') AS bucket, CASE … END AS duration_bucket, count(*)\nFROM ci\n" +
      "WHERE timestamp >= now() - interval '7 days'\n  AND duration IS NOT NULL\n  AND (status = 'failed' OR status = 'error')\n" +
      'GROUP BY bucket, duration_bucket\nLIMIT 10000',
  );
  const spec = heatmapSpec({ columns: ['bucket', 'duration_bucket', 'count(*)'], rows: [[t(2), 3, 7], [t(1), 0, 2]] });
  assert.deepEqual(spec.times, [t(1), t(2)]);
  assert.deepEqual(spec.cells, [[1, 3, 7], [0, 0, 2]]);
  assert.equal(spec.max, 7);
});

test('the flaky ranking: its queries leave out what the dataset lacks', () => {
  assert.equal(sinceInterval('7d'), '7 days');
  assert.equal(sinceInterval('12h'), '12 hours');
  const withCommit = flakyQueries('ci', { since: '30d', branch: 'main', fields: new Map([['classname', 'string'], ['commit', 'string'], ['flaky', 'bool']]) });
  assert.equal(withCommit.length, 2);
  assert.equal(
    withCommit[0].sql,
    'SELECT classname, name, commit, status, flaky, count(*) AS runs, min(timestamp) AS first_run, max(timestamp) AS last_run\n' +
      "FROM ci\nWHERE name IS NOT NULL AND status IN ('passed', 'failed', 'error')\n  AND commit IS NOT NULL\n  AND branch = 'main'\n" +
      "  AND timestamp >= now() - interval '30 days'\nGROUP BY classname, name, commit, status, flaky",
  );
  const noCommit = flakyQueries('ci', { since: 'all', fields: new Map([['build', 'int']]) });
  assert.equal(noCommit.length, 1);
  assert.match(noCommit[0].sql, /^SELECT name, build, status, count\(\*\)/);
});

test("a test's history: per commit, its outcome, its runs", () => {
  const fields = new Map([['classname', 'string'], ['commit', 'string'], ['duration', 'float'], ['status', 'string']]);
  const test_ = { dataset: 'ci', classname: "a.B'C", name: 'test_x', range: { preset: 'all' }, fields };
  assert.match(perCommitSql(test_), /^SELECT commit, min\(timestamp\) AS first_run/);
  assert.match(perCommitSql(test_), /WHERE classname = 'a\.B''C'\n  AND name = 'test_x'\nGROUP BY commit/);
  assert.match(runsSql(test_), /^SELECT timestamp, commit, status, duration\n/);
  assert.match(perCommitSql({ ...test_, fields: new Map() }), /time_bucket\(timestamp, INTERVAL '1 day'\) AS day[\s\S]*GROUP BY day/);
  assert.equal(outcome(1, 1, 0), 'flaky');
  assert.equal(outcome(0, 2, 0), 'failed');
  assert.equal(outcome(3, 0, 1), 'passed');
  assert.equal(outcome(0, 0, 2), 'skipped');
});

test('errors point into the SQL; partial and stale answers say so', () => {
  assert.equal(caretLines('SELECT count(*)\nFROM ci\nWHERE statuz = 1', 3, 7), 'WHERE statuz = 1\n      ^');
  assert.equal(caretLines('\tx', 1, 2), '\tx\n\t^');
  assert.equal(caretLines('x', 4, 1), null);
  assert.equal(
    partialText([{ dataset: 'ci', partition: 3, reason: 'no replica answered: storage-0 (down)' }]),
    'Partial answer: ci/3 (no replica answered: storage-0 (down)). The rows of these partitions are missing.',
  );
  assert.equal(freshnessText({ records_behind: 0, behind_ms: 0 }), '');
  assert.equal(freshnessText({}), '');
  assert.match(freshnessText({ records_behind: 1200, behind_ms: 1400 }), /up to 1,200 records and 1\.4 s behind/);
});
