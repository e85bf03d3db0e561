// The SQL behind `flakehouse flaky` (flakehouse.client.flaky.queries): the runs of each test
// per commit (or per build and job when there is no commit), which the ranking reads.
import { quoteIdent, quoteString } from './sql.js';

const OPTIONAL = ['classname', 'commit', 'build', 'job', 'flaky'];

// "7d" → "7 days", as the API's `since` reads it.
export function sinceInterval(since) {
  const match = /^(\d+)([mhdw])$/.exec(since);
  if (!match) return null;
  return `${Number(match[1])} ${{ m: 'minutes', h: 'hours', d: 'days', w: 'weeks' }[match[2]]}`;
}

// [{title, sql}]: the queries, leaving out the optional fields the dataset lacks.
export function flakyQueries(dataset, { since = '7d', branch = '', fields }) {
  const absent = new Set(OPTIONAL.filter((f) => fields && !fields.has(f)));
  const keys = (unit) => ['classname', 'name', ...unit, 'status', 'flaky'].filter((f) => !absent.has(f)).map(quoteIdent).join(', ');
  const tail = [];
  if (branch) tail.push(`${quoteIdent('branch')} = ${quoteString(branch)}`);
  const interval = since && since !== 'all' ? sinceInterval(since) : null;
  if (interval) tail.push(`timestamp >= now() - interval '${interval}'`);
  const query = (unit, commit) => {
    const where = ["name IS NOT NULL AND status IN ('passed', 'failed', 'error')"];
    if (commit) where.push(`${quoteIdent('commit')} ${commit}`);
    return [
      `SELECT ${keys(unit)}, count(*) AS runs, min(timestamp) AS first_run, max(timestamp) AS last_run`,
      `FROM ${quoteIdent(dataset)}`,
      `WHERE ${[...where, ...tail].join('\n  AND ')}`,
      `GROUP BY ${keys(unit)}`,
    ].join('\n');
  };
  if (absent.has('commit')) return [{ title: 'Runs per build and job', sql: query(['build', 'job'], null) }];
  return [
    { title: 'Runs per commit', sql: query(['commit'], 'IS NOT NULL') },
    { title: 'Runs without a commit, per build and job', sql: query(['build', 'job'], 'IS NULL') },
  ];
}
