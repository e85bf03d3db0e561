import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { escapeHtml, formatG, formatCell, formatInt, pythonFloat } from '../../src/flakehouse/console/static/js/format.js';

// [repr(x), f"{x:.6g}"] from Python (make-formatg-cases.py).
const cases = JSON.parse(readFileSync(new URL('./formatg-cases.json', import.meta.url), 'utf8'));
const parse = (repr) => ({ nan: NaN, inf: Infinity, '-inf': -Infinity })[repr] ?? Number(repr);

test('formatG matches Python on the examples of the brief', () => {
  assert.equal(formatG(0), '0');
  assert.equal(formatG(-3.25), '-3.25');
  assert.equal(formatG(1e-5), '1e-05');
  assert.equal(formatG(123456789.0), '1.23457e+08');
  assert.equal(formatG(0.1 + 0.2), '0.3');
  assert.equal(formatG(2.0), '2');
});

test('formatG rounds an exact tie to even, as Python does', () => {
  assert.equal(formatG(1234565), '1.23456e+06');
  assert.equal(formatG(1234575), '1.23458e+06');
  assert.equal(formatG(-1234565), '-1.23456e+06');
  assert.equal(formatG(0.5, 0 + 1), '0.5');
});

test(`formatG matches Python's f"{x:.6g}" on ${cases.length} values`, () => {
  for (const [repr, expected] of cases) assert.equal(formatG(parse(repr)), expected, repr);
});

test('cells print as the CLI table prints them', () => {
  assert.equal(formatCell(null, 'string'), 'NULL');
  assert.equal(formatCell(true, 'bool'), 'true');
  assert.equal(formatCell(false, 'bool'), 'false');
  assert.equal(formatCell(1, 'float'), '1');
  assert.equal(formatCell(0.06666666666666667, 'float'), '0.0666667');
  assert.equal(formatCell(1234567, 'int'), '1,234,567');
  assert.equal(formatCell(1234567, 'int', { grouping: false }), '1234567');
  assert.equal(formatCell(-1234, 'int'), '-1,234');
  assert.equal(formatCell(2.5, undefined), '2.5', 'a mixed column: the value says float');
  assert.equal(formatCell('2026-11-20T09:14:03.512345Z', 'timestamp'), '2026-11-20T09:14:03.512345Z');
  assert.equal(formatInt(999), '999');
});

test("pythonFloat is Python's repr on every case", () => {
  for (const [repr] of cases) {
    assert.equal(pythonFloat(parse(repr)), repr, repr);
  }
});

test('escapeHtml leaves no markup', () => {
  assert.equal(escapeHtml('<meta http-equiv="refresh">&\''), '&#60;meta http-equiv=&#34;refresh&#34;&#62;&#38;&#39;');
});
