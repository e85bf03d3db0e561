// Which chart an answer gets, and its ECharts options: lines over a time bucket, bars over
// group keys, a heatmap of durations. Pure functions of the answer (chart.js draws them).
import { formatCell } from './format.js';

export const MAX_SERIES = 10;
export const MAX_BARS = 50;
export const PALETTE = ['#0b5cad', '#c2410c', '#047857', '#a21caf', '#b45309', '#0e7490', '#6d28d9', '#4b5563', '#be123c', '#15803d'];

const isNumber = (type) => type === 'int' || type === 'float';

// An RFC 3339 time as received (microseconds, any offset) → milliseconds since the epoch.
export function timeMs(text) {
  return Date.parse(String(text).replace(/(\.\d{3})\d*/, '$1'));
}

// The answer's shape: which columns are keys (the time bucket among them) and which are values.
// `hint` comes from the builder when it wrote the query: {raw, keys, bucket}. Without it, the
// leading columns that are not numbers are the keys.
export function answerShape(answer, hint = null) {
  const types = answer.types ?? [];
  if (hint?.raw) return null;
  let keys;
  if (hint) {
    keys = [...Array(hint.keys).keys()];
  } else {
    keys = [];
    while (keys.length < types.length && !isNumber(types[keys.length])) keys.push(keys.length);
  }
  const values = types.map((t, i) => i).filter((i) => i >= keys.length && isNumber(types[i]));
  if (!values.length || !keys.length) return null;
  const time = hint ? (hint.bucket ? 0 : null) : types[0] === 'timestamp' ? 0 : null;
  return { keys, values, time };
}

// {kind: 'line' | 'bar', series: [{name, data}], categories?, note?} or null (no chart).
export function chartSpec(answer, hint = null) {
  const shape = answerShape(answer, hint);
  if (!shape || !answer.rows.length) return null;
  const { columns, rows } = answer;
  const types = answer.types ?? [];
  const label = (row, indices) => indices.map((i) => formatCell(row[i], types[i])).join(' / ');
  if (shape.time !== null) {
    const others = shape.keys.filter((k) => k !== shape.time);
    let series;
    if (!others.length) {
      series = shape.values.map((v) => ({ name: columns[v], data: rows.map((r) => [timeMs(r[shape.time]), r[v]]) }));
    } else {
      // One series per group of the other keys, for the first value column.
      const value = shape.values[0];
      const groups = new Map();
      for (const row of rows) {
        const name = label(row, others);
        if (!groups.has(name)) groups.set(name, { name, data: [], total: 0 });
        const group = groups.get(name);
        group.data.push([timeMs(row[shape.time]), row[value]]);
        group.total += Number(row[value]) || 0;
      }
      series = [...groups.values()].sort((a, b) => b.total - a.total);
    }
    for (const s of series) s.data.sort((a, b) => a[0] - b[0]);
    const total = series.length;
    return {
      kind: 'line',
      series: series.slice(0, MAX_SERIES).map(({ name, data }) => ({ name, data })),
      valueName: others.length ? columns[shape.values[0]] : null,
      note: total > MAX_SERIES ? `showing the ${MAX_SERIES} largest of ${total} series` : null,
    };
  }
  const shown = rows.slice(0, MAX_BARS);
  return {
    kind: 'bar',
    categories: shown.map((row) => label(row, shape.keys)),
    series: shape.values.slice(0, MAX_SERIES).map((v) => ({ name: columns[v], data: shown.map((r) => r[v]) })),
    keyName: shape.keys.map((k) => columns[k]).join(' / '),
    note: rows.length > MAX_BARS ? `showing the first ${MAX_BARS} of ${rows.length} rows` : null,
  };
}

// Times on axes and in tooltips, in the query's time zone (not the browser's).
export function timeFormatter(timeZone) {
  const format = new Intl.DateTimeFormat('en-CA', {
    timeZone: timeZone || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  });
  return (ms) => format.format(new Date(ms)).replace(',', '');
}

const fmt = (v) => (typeof v === 'number' ? formatCell(v, Number.isInteger(v) ? 'int' : 'float') : String(v));

// A sentence that says what the chart shows, for screen readers (and the chart's aria-label).
export function summarize(spec, timeZone) {
  if (spec.kind === 'line') {
    const when = timeFormatter(timeZone);
    const times = spec.series.flatMap((s) => s.data.map((d) => d[0]));
    const from = when(Math.min(...times));
    const to = when(Math.max(...times));
    const parts = spec.series.map((s) => {
      const values = s.data.map((d) => d[1]).filter((v) => typeof v === 'number');
      return `${s.name}: ${s.data.length} points, from ${fmt(Math.min(...values))} to ${fmt(Math.max(...values))}`;
    });
    return `Line chart over time, ${from} to ${to}${spec.valueName ? ` (${spec.valueName})` : ''}. ${parts.join('; ')}.`;
  }
  if (spec.kind === 'bar') {
    const first = spec.series[0];
    const items = spec.categories.slice(0, 10).map((c, i) => `${c} ${fmt(first.data[i])}`);
    const more = spec.categories.length > 10 ? `, and ${spec.categories.length - 10} more` : '';
    return `Bar chart of ${spec.series.map((s) => s.name).join(', ')} by ${spec.keyName}: ${items.join(', ')}${more}.`;
  }
  return '';
}

function baseOption(summary) {
  return {
    aria: { enabled: true, label: { description: summary } },
    color: PALETTE,
    animation: false,
    textStyle: { fontFamily: 'inherit' },
    grid: { left: 16, right: 24, top: 40, bottom: 16, containLabel: true },
    tooltip: { trigger: 'axis', confine: true },
  };
}

export function chartOption(spec, { timeZone, summary }) {
  const option = baseOption(summary);
  if (spec.series.length > 1) option.legend = { type: 'scroll', top: 0 };
  if (spec.kind === 'line') {
    const when = timeFormatter(timeZone);
    option.xAxis = { type: 'time', axisLabel: { formatter: (ms) => when(ms), hideOverlap: true, alignMinLabel: 'left', alignMaxLabel: 'right' } };
    option.yAxis = { type: 'value', scale: false };
    option.tooltip.axisPointer = { label: { formatter: ({ value }) => when(value) } };
    option.series = spec.series.map((s) => ({ type: 'line', name: s.name, data: s.data, showSymbol: s.data.length < 60, connectNulls: false }));
  } else {
    option.xAxis = { type: 'category', data: spec.categories, axisLabel: { interval: 'auto', hideOverlap: true, width: 140, overflow: 'truncate' } };
    option.yAxis = { type: 'value' };
    option.series = spec.series.map((s) => ({ type: 'bar', name: s.name, data: s.data }));
  }
  return option;
}

// --- the duration heatmap -------------------------------------------------------------------

// Upper bounds in seconds (JUnit durations are seconds) and their labels; the last has none.
export const DURATION_BUCKETS = [
  [0.001, '< 1 ms'], [0.01, '1–10 ms'], [0.1, '10–100 ms'], [1, '0.1–1 s'], [10, '1–10 s'], [60, '10–60 s'], [null, '≥ 1 min'],
];

// The CASE that puts a duration in its bucket, 0 to 6 (SQL has no log or floor here).
export function durationBucketSql(field = 'duration') {
  const whens = DURATION_BUCKETS.filter(([bound]) => bound !== null).map(([bound], i) => `WHEN ${field} < ${bound} THEN ${i}`);
  return `CASE ${whens.join(' ')} ELSE ${DURATION_BUCKETS.length - 1} END`;
}

// answer: columns bucket (time), duration_bucket (0–6), count.
export function heatmapSpec(answer) {
  const times = [...new Set(answer.rows.map((r) => r[0]))].sort((a, b) => timeMs(a) - timeMs(b));
  const index = new Map(times.map((t, i) => [t, i]));
  const cells = answer.rows.map((r) => [index.get(r[0]), r[1], r[2]]);
  return { kind: 'heatmap', times, cells, max: Math.max(1, ...cells.map((c) => c[2])) };
}

export function summarizeHeatmap(spec, timeZone) {
  if (!spec.cells.length) return 'Duration heatmap: no runs with a duration in this range.';
  const when = timeFormatter(timeZone);
  const perBucket = DURATION_BUCKETS.map(([, name], i) => [name, spec.cells.filter((c) => c[1] === i).reduce((n, c) => n + c[2], 0)]);
  const busiest = perBucket.filter(([, n]) => n > 0).map(([name, n]) => `${name}: ${fmt(n)}`);
  return `Duration heatmap, ${spec.times.length} time buckets from ${when(timeMs(spec.times[0]))} to ${when(timeMs(spec.times[spec.times.length - 1]))}. Runs per duration: ${busiest.join(', ')}.`;
}

export function heatmapOption(spec, { timeZone, summary }) {
  const when = timeFormatter(timeZone);
  return {
    ...baseOption(summary),
    tooltip: { position: 'top', confine: true },
    grid: { left: 16, right: 24, top: 16, bottom: 64, containLabel: true },
    xAxis: { type: 'category', data: spec.times.map((t) => when(timeMs(t))), splitArea: { show: true } },
    yAxis: { type: 'category', data: DURATION_BUCKETS.map(([, name]) => name), splitArea: { show: true } },
    visualMap: {
      min: 0, max: spec.max, calculable: true, orient: 'horizontal', left: 'center', bottom: 0,
      inRange: { color: ['#e8f1fb', '#0b5cad', '#0a2a4f'] },
    },
    series: [{ type: 'heatmap', name: 'runs', data: spec.cells, label: { show: spec.cells.length <= 60 } }],
  };
}
