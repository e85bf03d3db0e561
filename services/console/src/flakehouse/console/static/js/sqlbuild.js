// The builder's state → the SQL it runs. sqlparse.js reads this SQL back; a query is shown in
// the builder only when building its reading gives the same SQL again.
import { quoteIdent, quoteString, literal, splitList } from './sql.js';
import { rangeConditions } from './timerange.js';

// `field`: which fields an aggregate takes — none, any field (optional for count), or numbers.
export const AGGREGATES = [
  { id: 'count', label: 'count', field: 'optional' },
  { id: 'count_distinct', label: 'count distinct', field: 'any' },
  { id: 'failure_rate', label: 'failure rate', field: 'none' },
  { id: 'p50', label: 'p50', field: 'number' },
  { id: 'p95', label: 'p95', field: 'number' },
  { id: 'p99', label: 'p99', field: 'number' },
  { id: 'avg', label: 'avg', field: 'number' },
  { id: 'max', label: 'max', field: 'any' },
  { id: 'min', label: 'min', field: 'any' },
  { id: 'sum', label: 'sum', field: 'number' },
];

// Failed or errored runs over all runs (skipped ones included); `/` is float division.
export const FAILURE_RATE = "count_if(status IN ('failed', 'error')) / count(*)";
export const FAILURE_RATE_ALIAS = 'failure_rate';
export const BUCKET_ALIAS = 'bucket';
export const BUCKETS = ['', '1 minute', '5 minutes', '1 hour', '1 day', '1 week'];

export const OPERATORS = {
  string: ['=', '!=', 'in', 'contains', 'exists'],
  int: ['=', '!=', '<', '>', 'in', 'exists'],
  float: ['=', '!=', '<', '>', 'in', 'exists'],
  timestamp: ['=', '!=', '<', '>', 'exists'],
  bool: ['=', '!=', 'exists'],
  mixed: ['=', '!=', '<', '>', 'in', 'contains', 'exists'],
};
export const VALUELESS_OPS = new Set(['exists']);

// The fields a raw-rows query lists when the builder has no aggregate and no group.
const RAW_COLUMNS = ['timestamp', 'suite', 'classname', 'name', 'status', 'duration', 'message'];

export function newState(dataset = '') {
  return {
    dataset,
    range: { preset: '7d' },
    aggregates: [{ fn: 'count', field: '' }],
    where: [], // {field, op, value, join: 'AND' | 'OR'}; the first row's join is unused
    groupBy: [],
    bucket: '',
    having: '',
    orderBy: '', // the SQL of an output column (see outputColumns), '' for the service's order
    orderDir: 'DESC',
    limit: 100,
    columns: null, // raw rows: the fields listed (null: RAW_COLUMNS that the dataset has)
  };
}

// `fields`: Map name → type ("string", "int", "float", "bool", "timestamp", "mixed").
export function fieldType(fields, name) {
  if (name === 'timestamp') return 'timestamp';
  return fields?.get(name) ?? 'mixed';
}

export function aggregateSql(agg) {
  const field = agg.field ? quoteIdent(agg.field) : '';
  switch (agg.fn) {
    case 'count':
      return field ? `count(${field})` : 'count(*)';
    case 'count_distinct':
      return field && `count(DISTINCT ${field})`;
    case 'failure_rate':
      return `${FAILURE_RATE} AS ${FAILURE_RATE_ALIAS}`;
    default:
      return field && `${agg.fn}(${field})`;
  }
}

export function isAggregateQuery(state) {
  return state.aggregates.length > 0 || state.groupBy.length > 0 || state.bucket !== '';
}

export function rawColumns(state, fields) {
  if (state.columns) return state.columns;
  const present = RAW_COLUMNS.filter((f) => f === 'timestamp' || !fields || fields.has(f));
  return present;
}

// The answer's columns: `name` as the service names it, `sql` what ORDER BY says to sort by it.
export function outputColumns(state, fields) {
  if (!isAggregateQuery(state)) {
    return rawColumns(state, fields).map((f) => ({ name: f, sql: quoteIdent(f) }));
  }
  const columns = [];
  if (state.bucket) columns.push({ name: BUCKET_ALIAS, sql: BUCKET_ALIAS });
  for (const f of state.groupBy.filter(Boolean)) columns.push({ name: f, sql: quoteIdent(f) });
  for (const agg of state.aggregates) {
    const sql = aggregateSql(agg);
    if (!sql) continue;
    if (agg.fn === 'failure_rate') columns.push({ name: FAILURE_RATE_ALIAS, sql: FAILURE_RATE_ALIAS });
    else columns.push({ name: sql, sql });
  }
  return columns;
}

export function conditionSql(row, fields) {
  if (!row.field) return '';
  const field = quoteIdent(row.field);
  const type = fieldType(fields, row.field);
  if (row.op === 'exists') return `${field} IS NOT NULL`;
  if (row.value === undefined || row.value === '') return ''; // still being typed
  if (row.op === 'contains') {
    if (!/[%_]/.test(row.value)) return `${field} LIKE ${quoteString(`%${row.value}%`)}`;
    // % and _ are LIKE's wildcards and the dialect has no LIKE … ESCAPE: a regular expression
    // that takes every character of the value literally.
    return `regexp_matches(${field}, ${quoteString(row.value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))})`;
  }
  if (row.op === 'in') {
    const values = splitList(row.value);
    return values.length ? `${field} IN (${values.map((v) => literal(v, type)).join(', ')})` : '';
  }
  return `${field} ${row.op} ${literal(row.value, type)}`;
}

// The user's conditions in their order, joined as written (SQL gives AND precedence over OR),
// and whether an OR joins them.
export function whereSql(rows, fields) {
  let sql = '';
  let hasOr = false;
  for (const row of rows) {
    const condition = conditionSql(row, fields);
    if (!condition) continue;
    if (sql) hasOr ||= row.join === 'OR';
    sql += sql ? ` ${row.join === 'OR' ? 'OR' : 'AND'} ${condition}` : condition;
  }
  return { sql, hasOr };
}

// The whole WHERE: time bounds first, AND-ed at the top level, then the user's conditions
// (parenthesized when they hold an OR, so that the time bounds still hold for every row).
export function whereClause(state, fields) {
  const parts = rangeConditions(state.range);
  const user = whereSql(state.where, fields);
  if (user.sql) parts.push(parts.length && user.hasOr ? `(${user.sql})` : user.sql);
  return parts.join('\n  AND ');
}

export function buildSql(state, fields) {
  const lines = [];
  const where = whereClause(state, fields);
  if (isAggregateQuery(state)) {
    const keys = [];
    const items = [];
    if (state.bucket) {
      items.push(`time_bucket(timestamp, INTERVAL '${state.bucket}') AS ${BUCKET_ALIAS}`);
      keys.push(BUCKET_ALIAS);
    }
    for (const f of state.groupBy.filter(Boolean)) {
      items.push(quoteIdent(f));
      keys.push(quoteIdent(f));
    }
    items.push(...state.aggregates.map(aggregateSql).filter(Boolean));
    lines.push(`SELECT ${items.join(', ')}`, `FROM ${quoteIdent(state.dataset)}`);
    if (where) lines.push(`WHERE ${where}`);
    if (keys.length) lines.push(`GROUP BY ${keys.join(', ')}`);
    if (state.having.trim()) lines.push(`HAVING ${state.having.trim()}`);
  } else {
    lines.push(`SELECT ${rawColumns(state, fields).map(quoteIdent).join(', ')}`);
    lines.push(`FROM ${quoteIdent(state.dataset)}`);
    if (where) lines.push(`WHERE ${where}`);
  }
  if (state.orderBy) lines.push(`ORDER BY ${state.orderBy}${state.orderDir === 'DESC' ? ' DESC' : ''}`);
  const limit = Number(state.limit);
  if (state.limit !== '' && state.limit !== null && Number.isInteger(limit) && limit >= 0) {
    lines.push(`LIMIT ${limit}`);
  }
  return lines.join('\n');
}

// A small query for the values a field takes, most frequent first: WHERE's value suggestions.
export function suggestionSql(dataset, field, range) {
  const name = quoteIdent(field);
  const where = rangeConditions(range);
  return (
    `SELECT ${name}, count(*) FROM ${quoteIdent(dataset)}` +
    ` WHERE ${[...where, `${name} IS NOT NULL`].join(' AND ')}` +
    ` GROUP BY ${name} ORDER BY count(*) DESC LIMIT 20`
  );
}

// The duration heatmap's query: runs counted per time bucket and duration bucket, over the
// builder's time range and conditions. `durationCase` is the CASE that numbers the buckets.
export function heatmapSql(state, fields, width, durationCase) {
  const user = whereSql(state.where, fields);
  const where = [...rangeConditions(state.range), 'duration IS NOT NULL'];
  if (user.sql) where.push(user.hasOr ? `(${user.sql})` : user.sql);
  return [
    `SELECT time_bucket(timestamp, INTERVAL '${width}') AS ${BUCKET_ALIAS}, ${durationCase} AS duration_bucket, count(*)`,
    `FROM ${quoteIdent(state.dataset)}`,
    `WHERE ${where.join('\n  AND ')}`,
    `GROUP BY ${BUCKET_ALIAS}, duration_bucket`,
    'LIMIT 10000',
  ].join('\n');
}
