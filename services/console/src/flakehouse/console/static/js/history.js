// The queries and charts of one test's history: its runs, and pass/fail per commit.
import { quoteIdent, quoteString } from './sql.js';
import { rangeConditions } from './timerange.js';
import { timeMs, timeFormatter, PALETTE } from './charts.js';
import { escapeHtml, formatCell } from './format.js';

export const STATUS_COLORS = { passed: '#1a7f37', failed: '#cf222e', error: '#8250df', skipped: '#6e7781', flaky: '#bf8700' };

// The conditions that pick the test's runs (classname only when given and the dataset has it).
function testConditions({ classname, name, range, fields }) {
  const where = [...rangeConditions(range)];
  if (classname && fields.has('classname')) where.push(`classname = ${quoteString(classname)}`);
  where.push(`name = ${quoteString(name)}`);
  return where.join('\n  AND ');
}

// How runs are grouped into "commits": the commit, else the build, else the day.
export function unitOf(fields) {
  if (fields.has('commit')) return { key: 'commit', label: 'commit', sql: quoteIdent('commit') };
  if (fields.has('build')) return { key: 'build', label: 'build', sql: quoteIdent('build') };
  return { key: 'day', label: 'day', sql: "time_bucket(timestamp, INTERVAL '1 day') AS day" };
}

export function perCommitSql(test) {
  const unit = unitOf(test.fields);
  return [
    `SELECT ${unit.sql}, min(timestamp) AS first_run, count(*) AS runs,`,
    `       count_if(status = 'passed') AS passed, count_if(status IN ('failed', 'error')) AS failed,`,
    `       count_if(status = 'skipped') AS skipped`,
    `FROM ${quoteIdent(test.dataset)}`,
    `WHERE ${testConditions(test)}`,
    `GROUP BY ${unit.key === 'day' ? 'day' : unit.sql}`,
    'ORDER BY first_run DESC',
    'LIMIT 200',
  ].join('\n');
}

export function runsSql(test) {
  const columns = ['timestamp', 'commit', 'branch', 'status', 'duration', 'message'].filter((f) => f === 'timestamp' || test.fields.has(f));
  return [
    `SELECT ${columns.map(quoteIdent).join(', ')}`,
    `FROM ${quoteIdent(test.dataset)}`,
    `WHERE ${testConditions(test)}`,
    'ORDER BY timestamp DESC',
    'LIMIT 1000',
  ].join('\n');
}

// A commit's outcome: flaky when it both passed and failed.
export function outcome(passed, failed, skipped) {
  if (passed && failed) return 'flaky';
  if (failed) return 'failed';
  if (passed) return 'passed';
  return skipped ? 'skipped' : 'passed';
}

// Per-commit answer (newest first) → a stacked bar per commit at its first run's time, its
// runs split by status, and the commit's outcome in the tooltip.
export function commitsChart(answer, { timeZone, unitLabel }) {
  const rows = [...answer.rows].reverse();
  const when = timeFormatter(timeZone);
  const name = (row) => formatCell(row[0], answer.types?.[0], { grouping: false });
  const outcomes = rows.map((r) => outcome(r[3], r[4], r[5]));
  const counts = Object.fromEntries(['passed', 'failed', 'flaky', 'skipped'].map((o) => [o, outcomes.filter((x) => x === o).length]));
  const summary =
    `Pass and fail per ${unitLabel}, ${rows.length} ${unitLabel}s from ${when(timeMs(rows[0][1]))} to ${when(timeMs(rows[rows.length - 1][1]))}: ` +
    `${counts.passed} passed, ${counts.failed} failed, ${counts.flaky} flaky (passed and failed), ${counts.skipped} only skipped.`;
  const series = [['passed', 3], ['failed', 4], ['skipped', 5]].map(([status, column]) => ({
    type: 'bar', name: status, stack: 'runs', color: STATUS_COLORS[status], barMaxWidth: 28, barMinWidth: 3,
    data: rows.map((r, i) => ({ value: [timeMs(r[1]), r[column]], row: i })),
  }));
  const option = {
    aria: { enabled: true, label: { description: summary } },
    animation: false,
    legend: { top: 0 },
    grid: { left: 16, right: 24, top: 36, bottom: 8, containLabel: true },
    tooltip: {
      trigger: 'axis',
      confine: true,
      formatter: (items) => {
        const i = items[0].data.row;
        const head = `${unitLabel} ${name(rows[i])} · ${when(timeMs(rows[i][1]))} · ${outcomes[i]}`;
        const lines = [head, ...items.map((item) => `${item.seriesName}: ${item.value[1]}`)];
        return lines.map(escapeHtml).join('<br>');
      },
    },
    // Room at both ends, so that the first and last bars are not cut in half.
    xAxis: { type: 'time', boundaryGap: ['4%', '4%'], axisLabel: { formatter: (ms) => when(ms), hideOverlap: true } },
    yAxis: { type: 'value', minInterval: 1, name: 'runs' },
    series,
  };
  return { option, summary, counts };
}

// Runs answer → durations over time, one scatter series per status.
export function durationChart(answer, { timeZone }) {
  const col = Object.fromEntries(answer.columns.map((c, i) => [c, i]));
  if (col.duration === undefined) return null;
  const when = timeFormatter(timeZone);
  const points = answer.rows.filter((r) => typeof r[col.duration] === 'number');
  if (!points.length) return null;
  const statuses = [...new Set(points.map((r) => r[col.status] ?? 'unknown'))];
  const durations = points.map((r) => r[col.duration]);
  const summary =
    `Duration of ${points.length} runs from ${when(timeMs(points[points.length - 1][col.timestamp]))} to ${when(timeMs(points[0][col.timestamp]))}: ` +
    `from ${formatCell(Math.min(...durations), 'float')} s to ${formatCell(Math.max(...durations), 'float')} s.`;
  const option = {
    aria: { enabled: true, label: { description: summary } },
    animation: false,
    legend: { top: 0 },
    grid: { left: 16, right: 24, top: 36, bottom: 8, containLabel: true },
    tooltip: { trigger: 'item', confine: true, formatter: (p) => `${escapeHtml(`${p.seriesName} · ${when(p.value[0])}`)}<br>${formatCell(p.value[1], 'float')} s` },
    xAxis: { type: 'time', axisLabel: { formatter: (ms) => when(ms), hideOverlap: true, alignMinLabel: 'left', alignMaxLabel: 'right' } },
    yAxis: { type: 'value', name: 'seconds' },
    series: statuses.map((status, i) => ({
      type: 'scatter', name: status, color: STATUS_COLORS[status] ?? PALETTE[i % PALETTE.length], symbolSize: 8,
      data: points.filter((r) => (r[col.status] ?? 'unknown') === status).map((r) => [timeMs(r[col.timestamp]), r[col.duration]]),
    })),
  };
  return { option, summary };
}
