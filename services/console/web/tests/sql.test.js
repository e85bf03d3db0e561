import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quoteIdent, quoteString, literal } from '../../src/flakehouse/console/static/js/sql.js';
import { buildSql, newState, outputColumns, suggestionSql } from '../../src/flakehouse/console/static/js/sqlbuild.js';
import { fromSql, datasetOf, Unreadable } from '../../src/flakehouse/console/static/js/sqlparse.js';
import { canonicalTokens, sameStatement } from '../../src/flakehouse/console/static/js/sqltokens.js';
import { rangeConditions } from '../../src/flakehouse/console/static/js/timerange.js';

const fields = new Map([
  ['status', 'string'], ['name', 'string'], ['suite', 'string'], ['duration', 'float'],
  ['retries', 'int'], ['flaky', 'bool'], ['prop.os', 'string'], ['message', 'string'],
  ['classname', 'string'], ['timestamp', 'int'],
]);

function state(overrides) {
  return { ...newState('ci'), ...overrides };
}

test('names are quoted only where they must be', () => {
  assert.equal(quoteIdent('status'), 'status');
  assert.equal(quoteIdent('prop.os'), '"prop.os"');
  assert.equal(quoteIdent('nightly-2'), '"nightly-2"');
  assert.equal(quoteIdent('2nd'), '"2nd"');
  assert.equal(quoteIdent('order'), '"order"');
  assert.equal(quoteIdent('a"b'), '"a""b"');
  assert.equal(quoteString("it's"), "'it''s'");
  assert.equal(literal('5', 'int'), '5');
  assert.equal(literal('5', 'string'), "'5'");
  assert.equal(literal('x', 'int'), "'x'");
  assert.equal(literal('true', 'bool'), 'TRUE');
  assert.equal(literal('1.5e3', 'float'), '1.5e3');
});

test('the default query: a count over the last 7 days', () => {
  assert.equal(
    buildSql(newState('ci'), fields),
    "SELECT count(*)\nFROM ci\nWHERE timestamp >= now() - interval '7 days'\nLIMIT 100",
  );
});

test('aggregates, conditions, groups, a bucket, HAVING, ORDER BY and LIMIT', () => {
  const sql = buildSql(
    state({
      range: { preset: '24h' },
      aggregates: [
        { fn: 'count', field: '' }, { fn: 'count_distinct', field: 'name' }, { fn: 'failure_rate', field: '' },
        { fn: 'p95', field: 'duration' }, { fn: 'avg', field: 'duration' }, { fn: 'sum', field: 'retries' },
      ],
      where: [
        { field: 'status', op: 'in', value: 'failed, error', join: 'AND' },
        { field: 'name', op: 'contains', value: 'login', join: 'AND' },
        { field: 'prop.os', op: 'exists', value: '', join: 'OR' },
        { field: 'retries', op: '>', value: '0', join: 'AND' },
      ],
      groupBy: ['suite'],
      bucket: '1 hour',
      having: 'count(*) > 10',
      orderBy: 'count(*)',
      limit: 20,
    }),
    fields,
  );
  assert.equal(
    sql,
    "SELECT time_bucket(timestamp, INTERVAL '1 hour') AS bucket, suite, count(*), count(DISTINCT name), " +
      "count_if(status IN ('failed', 'error')) / count(*) AS failure_rate, p95(duration), avg(duration), sum(retries)\n" +
      'FROM ci\n' +
      "WHERE timestamp >= now() - interval '24 hours'\n" +
      "  AND (status IN ('failed', 'error') AND name LIKE '%login%' OR \"prop.os\" IS NOT NULL AND retries > 0)\n" +
      'GROUP BY bucket, suite\n' +
      'HAVING count(*) > 10\n' +
      'ORDER BY count(*) DESC\n' +
      'LIMIT 20',
  );
});

test('incomplete rows are left out until they are filled in', () => {
  const sql = buildSql(
    state({ range: { preset: 'all' }, where: [{ field: 'status', op: '=', value: '', join: 'AND' }, { field: '', op: '=', value: 'x' }] }),
    fields,
  );
  assert.equal(sql, 'SELECT count(*)\nFROM ci\nLIMIT 100');
});

test('time ranges: presets, relative and absolute', () => {
  assert.deepEqual(rangeConditions({ preset: 'all' }), []);
  assert.deepEqual(rangeConditions({ preset: '15m' }), ["timestamp >= now() - interval '15 minutes'"]);
  assert.deepEqual(rangeConditions({ preset: 'custom', mode: 'relative', amount: 3, unit: 'hours' }), [
    "timestamp >= now() - interval '3 hours'",
  ]);
  assert.deepEqual(rangeConditions({ preset: 'custom', mode: 'relative', amount: 1, unit: 'days' }), [
    "timestamp >= now() - interval '1 day'",
  ]);
  assert.deepEqual(rangeConditions({ preset: 'custom', mode: 'absolute', from: '2026-11-01T00:00', to: '2026-11-02T12:30' }), [
    "timestamp >= '2026-11-01T00:00:00'",
    "timestamp < '2026-11-02T12:30:00'",
  ]);
});

test('raw rows when there is no aggregate and no group', () => {
  const sql = buildSql(state({ aggregates: [], orderBy: 'timestamp', range: { preset: '1h' } }), fields);
  assert.equal(
    sql,
    "SELECT timestamp, suite, classname, name, status, duration, message\nFROM ci\nWHERE timestamp >= now() - interval '1 hour'\nORDER BY timestamp DESC\nLIMIT 100",
  );
});

test('output columns name what ORDER BY can sort by', () => {
  const columns = outputColumns(state({ bucket: '1 day', groupBy: ['prop.os'], aggregates: [{ fn: 'failure_rate' }, { fn: 'p50', field: 'duration' }] }), fields);
  assert.deepEqual(columns.map((c) => c.sql), ['bucket', '"prop.os"', 'failure_rate', 'p50(duration)']);
});

test('canonical tokens ignore case, spacing, comments, quotes that are not needed and ASC', () => {
  assert.ok(sameStatement('select COUNT(*) from "ci" -- all\n where "status" <> \'x\';', "SELECT count(*) FROM ci WHERE status != 'x'"));
  assert.ok(sameStatement('SELECT name FROM ci ORDER BY name ASC', 'SELECT name FROM ci ORDER BY name'));
  assert.ok(sameStatement('SELECT prop.os FROM ci', 'SELECT "prop.os" FROM ci'));
  assert.ok(!sameStatement('SELECT count(*) FROM ci LIMIT 1', 'SELECT count(*) FROM ci LIMIT 2'));
  assert.ok(!sameStatement("SELECT 'A' FROM ci", "SELECT 'a' FROM ci"));
  assert.deepEqual(canonicalTokens("select Lower(Name) from ci"), ['select', 'lower', '(', 'Name', ')', 'from', 'ci']);
});

test('what the builder writes reads back to the same state', () => {
  const states = [
    newState('ci'),
    state({ range: { preset: 'all' } }),
    state({ range: { preset: 'custom', mode: 'relative', amount: 3, unit: 'hours' }, limit: '' }),
    state({ range: { preset: 'custom', mode: 'absolute', from: '2026-11-01T00:00', to: '' } }),
    state({ range: { preset: 'custom', mode: 'absolute', from: '2026-11-01T00:00:30', to: '2026-12-01T00:00' } }),
    state({
      range: { preset: '30d' },
      aggregates: [{ fn: 'count', field: '' }, { fn: 'failure_rate', field: '' }, { fn: 'p99', field: 'duration' }, { fn: 'count', field: 'message' }],
      where: [
        { field: 'status', op: '!=', value: 'skipped', join: 'AND' },
        { field: 'flaky', op: '=', value: 'true', join: 'OR' },
        { field: 'duration', op: '<', value: '1.5', join: 'AND' },
      ],
      groupBy: ['suite', 'prop.os'],
      bucket: '5 minutes',
      having: "count(*) > 3 AND p99(duration) > 1",
      orderBy: 'failure_rate',
      orderDir: 'ASC',
      limit: 10,
    }),
    state({ aggregates: [], groupBy: ['status', 'name'], orderBy: 'name', orderDir: 'ASC' }),
    state({ aggregates: [], columns: ['timestamp', 'name', 'message'], orderBy: 'timestamp', where: [{ field: 'message', op: 'contains', value: "it's", join: 'AND' }] }),
    state({ where: [{ field: 'retries', op: 'in', value: '1, 2, 3', join: 'AND' }, { field: 'name', op: 'exists', value: '', join: 'AND' }] }),
    { ...state({ aggregates: [{ fn: 'count_distinct', field: 'name' }] }), dataset: 'nightly-2' },
  ];
  for (const original of states) {
    const sql = buildSql(original, fields);
    let read;
    try {
      read = fromSql(sql, fields);
    } catch (error) {
      assert.fail(`${sql}\n→ ${error.message}`);
    }
    assert.equal(buildSql(read, fields), sql);
    assert.deepEqual(read.where.map(({ field, op, value }) => ({ field, op, value })), original.where.map(({ field, op, value }) => ({ field, op, value })));
    assert.deepEqual(read.range, original.range, sql);
    assert.deepEqual(read.groupBy, original.groupBy);
    assert.equal(read.bucket, original.bucket);
    assert.equal(read.dataset, original.dataset);
  }
});

test('SQL typed by hand in the builder shapes is read, however it is spelt', () => {
  const read = fromSql(
    "select STATUS, Count(*) from \"ci\" where timestamp >= NOW() - INTERVAL '1 hour' and status in ('failed','error') group by STATUS order by count(*) desc limit 5;",
    new Map([['STATUS', 'string'], ['status', 'string']]),
  );
  assert.deepEqual(read.groupBy, ['STATUS']);
  assert.deepEqual(read.range, { preset: '1h' });
  assert.deepEqual(read.where[0], { field: 'status', op: 'in', value: 'failed, error', join: 'AND' });
  assert.equal(read.orderBy, 'count(*)');
  assert.equal(read.limit, 5);
});

test('what the builder cannot show is refused, never shown as another query', () => {
  for (const sql of [
    'SELECT lower(name), count(*) FROM ci GROUP BY lower(name)',
    'SELECT count(*) AS n FROM ci',
    'SELECT count(*), status FROM ci GROUP BY status',
    'SELECT status, count(*) FROM ci GROUP BY status, name',
    "SELECT count(*) FROM ci WHERE status = 'failed' OR timestamp >= now() - interval '1 day'",
    "SELECT count(*) FROM ci WHERE timestamp >= now() - interval '1 day' AND status = 'a' OR status = 'b'",
    "SELECT count(*) FROM ci WHERE name LIKE 'a%'",
    "SELECT count(*) FROM ci WHERE retries = '1'",
    'SELECT count(*) FROM ci LIMIT 10 OFFSET 5',
    'SELECT name FROM ci ORDER BY duration',
    'SELECT count(*) FROM ci WHERE duration BETWEEN 1 AND 2',
    "SELECT count(*) FILTER (WHERE status = 'failed') FROM ci",
    'DESCRIBE ci',
    'SELECT count(*) FROM ci WHERE name = ?',
  ]) {
    assert.throws(() => fromSql(sql, fields), Unreadable, sql);
  }
});

test('the dataset a statement reads', () => {
  assert.equal(datasetOf('SELECT count(*) FROM "nightly-2"'), 'nightly-2');
  assert.equal(datasetOf('SELECT count(*) FROM ci AS c'), null);
  assert.equal(datasetOf('DESCRIBE ci'), null);
});

test('value suggestions: the most frequent values over the range', () => {
  assert.equal(
    suggestionSql('ci', 'prop.os', { preset: '7d' }),
    "SELECT \"prop.os\", count(*) FROM ci WHERE timestamp >= now() - interval '7 days' AND \"prop.os\" IS NOT NULL GROUP BY \"prop.os\" ORDER BY count(*) DESC LIMIT 20",
  );
});

test('names the dialect does not read as plain names are quoted', () => {
  for (const word of ['window', 'current_date', 'fetch', 'glob', 'rollup', 'for', 'into']) {
    assert.equal(quoteIdent(word), `"${word}"`);
  }
  assert.equal(quoteIdent('status'), 'status');
  assert.equal(quoteIdent('prop.os'), '"prop.os"');
});

test('contains takes % and _ literally', async () => {
  const { conditionSql } = await import('../../src/flakehouse/console/static/js/sqlbuild.js');
  const fields = new Map([['name', 'string']]);
  assert.equal(conditionSql({ field: 'name', op: 'contains', value: 'login' }, fields), "name LIKE '%login%'");
  assert.equal(
    conditionSql({ field: 'name', op: 'contains', value: "test_a.b 100% (x)'" }, fields),
    "regexp_matches(name, 'test_a\\.b 100% \\(x\\)''')",
  );
});
