import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toCsv, csvFilename, csvField } from '../../src/flakehouse/console/static/js/csv.js';
import { permalink, readPermalink, shellQuote, cliCommand, curlCommand } from '../../src/flakehouse/console/static/js/permalink.js';
import { loadRecent, addRecent, MAX_RECENT } from '../../src/flakehouse/console/static/js/recent.js';
import { parseJson } from '../../src/flakehouse/console/static/js/api.js';

test('CSV: the values the CLI writes in its CSV, quoted per RFC 4180', () => {
  const csv = toCsv(
    ['name', 'count(*)', 'p95(duration)', 'ok', 'at'],
    [
      ['a, "b"', 1234567, 0.1 + 0.2, true, '2026-11-20T09:14:03.512345Z'],
      ['line\nbreak', 0, 123456789.0, null, null],
    ],
    ['string', 'int', 'float', 'bool', 'timestamp'],
  );
  assert.equal(
    csv,
    'name,count(*),p95(duration),ok,at\r\n' +
      '"a, ""b""",1234567,0.30000000000000004,True,2026-11-20T09:14:03.512345Z\r\n' +
      '"line\nbreak",0,123456789.0,,\r\n',
  );
  assert.equal(csvField('plain'), 'plain');
});

test('CSV file names carry the dataset and the local time', () => {
  assert.equal(csvFilename('ci', new Date(2026, 10, 20, 9, 4, 3)), 'flakehouse-ci-20261120-090403.csv');
});

test('permalinks round trip any SQL', () => {
  const sql = "SELECT count(*) FROM ci WHERE name = 'a&b=c #1 + 100%'";
  const url = permalink(sql, 'Europe/Paris');
  assert.ok(url.startsWith('/?sql='));
  assert.deepEqual(readPermalink(url.slice(1)), { sql, tz: 'Europe/Paris' });
  assert.equal(readPermalink('?tz=UTC'), null);
});

test('the CLI command and the curl call quote for a POSIX shell', () => {
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.equal(shellQuote('Europe/Paris'), 'Europe/Paris');
  const sql = "SELECT count(*) FROM ci WHERE status = 'failed'";
  assert.equal(cliCommand(sql, 'UTC'), `flakehouse query --tz UTC 'SELECT count(*) FROM ci WHERE status = '\\''failed'\\'''`);
  assert.equal(
    curlCommand('SELECT 1', 'America/New_York', 'http://127.0.0.1:8080'),
    `curl -H "Authorization: Bearer $FLAKEHOUSE_TOKEN" --get --data-urlencode 'sql=SELECT 1' --data-urlencode time_zone=America/New_York http://127.0.0.1:8080/api/v1/query`,
  );
});

test('recent queries: newest first, no duplicates, at most 20, never the token', () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  for (let i = 0; i < 25; i++) addRecent({ sql: `SELECT ${i}`, dataset: 'ci', tz: 'UTC' }, storage);
  addRecent({ sql: 'SELECT 10', dataset: 'ci', tz: 'UTC' }, storage);
  const list = loadRecent(storage);
  assert.equal(list.length, MAX_RECENT);
  assert.equal(list[0].sql, 'SELECT 10');
  assert.equal(list.filter((e) => e.sql === 'SELECT 10').length, 1);
  assert.deepEqual(Object.keys(list[0]).sort(), ['at', 'dataset', 'sql', 'tz']);
  assert.deepEqual(loadRecent({ getItem: () => 'not json' }), []);
});

test('answers with NaN and infinities (as Python writes them) still parse', () => {
  assert.deepEqual(parseJson('{"rows": [[NaN, -Infinity, "NaN in a string", Infinity]]}'), {
    rows: [[NaN, -Infinity, 'NaN in a string', Infinity]],
  });
});
