// The query builder's controls: dataset and time range, VISUALIZE (aggregates), WHERE rows,
// GROUP BY fields and a time bucket, HAVING, ORDER BY and LIMIT. It holds a state (sqlbuild.js)
// and calls onChange(state, what) whenever the person changes it.
import { el, byTestId, setOptions, show } from './dom.js';
import { AGGREGATES, BUCKETS, OPERATORS, VALUELESS_OPS, fieldType, isAggregateQuery, outputColumns, rawColumns } from './sqlbuild.js';
import { PRESETS, RELATIVE_UNITS } from './timerange.js';

const NUMERIC = new Set(['int', 'float', 'mixed']);
const BUCKET_LABELS = { '': 'none', '1 minute': '1 minute', '5 minutes': '5 minutes', '1 hour': '1 hour', '1 day': '1 day', '1 week': '1 week' };

// suggest(field) → Promise of the values to offer for it (most frequent first).
export function createBuilder(form, { onChange, suggest }) {
  let state = null;
  let fields = new Map();
  const parts = {
    dataset: byTestId('dataset-select', form),
    preset: byTestId('range-preset', form),
    custom: form.querySelector('.custom-range'),
    mode: byTestId('range-mode', form),
    relative: form.querySelector('.relative-range'),
    absolute: form.querySelector('.absolute-range'),
    amount: byTestId('range-amount', form),
    unit: byTestId('range-unit', form),
    from: byTestId('range-from', form),
    to: byTestId('range-to', form),
    aggregates: form.querySelector('#aggregates'),
    conditions: form.querySelector('#conditions'),
    groups: form.querySelector('#groups'),
    rawNote: byTestId('raw-columns', form),
    bucket: byTestId('bucket', form),
    having: byTestId('having', form),
    orderBy: byTestId('order-by', form),
    orderDir: byTestId('order-dir', form),
    limit: byTestId('limit', form),
  };
  setOptions(parts.preset, PRESETS.map((p) => [p.id, p.label]));
  setOptions(parts.unit, RELATIVE_UNITS.map((u) => [u, u]));
  setOptions(parts.bucket, BUCKETS.map((b) => [b, BUCKET_LABELS[b]]));

  const names = () => [...fields.keys()].sort((a, b) => a.localeCompare(b));
  // A field the dataset does not list (typed in the SQL) is still offered, so it shows.
  const withCurrent = (list, current) => (current && !list.includes(current) ? [current, ...list] : list);

  function fieldChoices(fn, current) {
    const spec = AGGREGATES.find((a) => a.id === fn);
    if (spec.field === 'none') return [['', 'status failed or error']];
    const list = spec.field === 'number' ? names().filter((n) => NUMERIC.has(fields.get(n)) && n !== 'timestamp') : names();
    const options = withCurrent(list, current).map((n) => [n, n]);
    return spec.field === 'optional' ? [['', '* (every row)'], ...options] : options;
  }

  function defaultField(fn) {
    const choices = fieldChoices(fn, '').map(([v]) => v);
    if (choices.includes('')) return '';
    return ['duration', 'name'].find((f) => choices.includes(f)) ?? choices[0] ?? '';
  }

  function removeButton(label, testid, index) {
    return el('button', { type: 'button', class: 'icon', dataset: { testid, index, action: 'remove' }, 'aria-label': label, title: label }, '✕');
  }

  function aggregateRow(agg, i) {
    const n = i + 1;
    const fn = el('select', { dataset: { testid: 'agg-fn', index: i }, 'aria-label': `Aggregate ${n} function` });
    setOptions(fn, AGGREGATES.map((a) => [a.id, a.label]), agg.fn);
    const field = el('select', { dataset: { testid: 'agg-field', index: i }, 'aria-label': `Aggregate ${n} field` });
    setOptions(field, fieldChoices(agg.fn, agg.field), agg.field);
    field.disabled = agg.fn === 'failure_rate';
    return el('div', { class: 'row', role: 'group', 'aria-label': `Aggregate ${n}` }, fn, field, removeButton(`Remove aggregate ${n}`, 'agg-remove', i));
  }

  function conditionRow(row, i) {
    const n = i + 1;
    const join = i === 0
      ? el('span', { class: 'join-word' }, 'where')
      : el('select', { class: 'join', dataset: { testid: 'where-join', index: i }, 'aria-label': `Condition ${n}: join with the one before` });
    if (i > 0) setOptions(join, [['AND', 'and'], ['OR', 'or']], row.join);
    const field = el('select', { dataset: { testid: 'where-field', index: i }, 'aria-label': `Condition ${n} field` });
    setOptions(field, [['', 'choose a field'], ...withCurrent(names(), row.field).map((f) => [f, f])], row.field);
    const op = el('select', { dataset: { testid: 'where-op', index: i }, 'aria-label': `Condition ${n} operator` });
    setOptions(op, OPERATORS[fieldType(fields, row.field)].map((o) => [o, o]), row.op);
    const listId = `where-values-${i}`;
    const value = el('input', {
      type: 'text', dataset: { testid: 'where-value', index: i }, 'aria-label': `Condition ${n} value`, list: listId,
      value: row.value, autocomplete: 'off', spellcheck: 'false', hidden: VALUELESS_OPS.has(row.op),
      placeholder: row.op === 'in' ? 'a, b, c' : 'value',
    });
    const datalist = el('datalist', { id: listId });
    value.addEventListener('focus', () => fillSuggestions(datalist, row.field), { once: true });
    if (row.field) fillSuggestions(datalist, row.field);
    return el('div', { class: 'row', role: 'group', 'aria-label': `Condition ${n}` }, join, field, op, value, datalist, removeButton(`Remove condition ${n}`, 'where-remove', i));
  }

  async function fillSuggestions(datalist, field) {
    if (!field || !suggest || !fields.has(field)) return; // an unknown field has no values
    try {
      const values = await suggest(field);
      datalist.replaceChildren(...values.map((v) => el('option', { value: v })));
    } catch {
      // suggestions are a convenience: a failure leaves the box as it is
    }
  }

  function groupRow(field, i) {
    const n = i + 1;
    const select = el('select', { dataset: { testid: 'group-field', index: i }, 'aria-label': `Group by field ${n}` });
    setOptions(select, [['', 'choose a field'], ...withCurrent(names(), field).map((f) => [f, f])], field);
    return el('div', { class: 'row', role: 'group', 'aria-label': `Group ${n}` }, select, removeButton(`Remove group ${n}`, 'group-remove', i));
  }

  function render() {
    const focused = document.activeElement;
    const keep = form.contains(focused) && focused.dataset.testid ? [focused.dataset.testid, focused.dataset.index] : null;
    const { range } = state;
    parts.preset.value = range.preset;
    show(parts.custom, range.preset === 'custom');
    parts.mode.value = range.mode ?? 'relative';
    show(parts.relative, range.mode !== 'absolute');
    show(parts.absolute, range.mode === 'absolute');
    if (range.preset === 'custom') {
      parts.amount.value = range.amount ?? '';
      parts.unit.value = range.unit ?? 'hours';
      parts.from.value = range.from ?? '';
      parts.to.value = range.to ?? '';
    }
    parts.aggregates.replaceChildren(...state.aggregates.map(aggregateRow));
    parts.conditions.replaceChildren(...state.where.map(conditionRow));
    parts.groups.replaceChildren(...state.groupBy.map(groupRow));
    parts.bucket.value = state.bucket;
    parts.having.value = state.having;
    const aggregate = isAggregateQuery(state);
    show(parts.rawNote, !aggregate);
    parts.rawNote.textContent = aggregate ? '' : `No aggregate and no group: the query lists rows (${rawColumns(state, fields).join(', ')}).`;
    renderOrder();
    parts.limit.value = state.limit;
    if (keep) {
      const selector = `[data-testid="${keep[0]}"]${keep[1] !== undefined ? `[data-index="${keep[1]}"]` : ''}`;
      form.querySelector(selector)?.focus();
    }
  }

  function renderOrder() {
    const columns = outputColumns(state, fields);
    if (state.orderBy && !columns.some((c) => c.sql === state.orderBy)) state.orderBy = '';
    setOptions(parts.orderBy, [['', 'the service’s order'], ...columns.map((c) => [c.sql, c.name])], state.orderBy);
    parts.orderDir.value = state.orderDir;
    parts.orderDir.disabled = !state.orderBy;
  }

  function changed(what = 'query', rerender = true) {
    if (rerender) render();
    onChange(state, what);
  }

  // A preset's interval as the starting point of a custom relative range.
  function customFrom(range) {
    const preset = PRESETS.find((p) => p.id === range.preset);
    const match = /^(\d+) (minute|hour|day)s?$/.exec(preset?.interval ?? '');
    return { preset: 'custom', mode: 'relative', amount: match ? Number(match[1]) : 7, unit: match ? `${match[2]}s` : 'days', from: '', to: '' };
  }

  form.addEventListener('change', (event) => {
    const target = event.target;
    const i = Number(target.dataset.index);
    switch (target.dataset.testid) {
      case 'dataset-select':
        state.dataset = target.value;
        return changed('dataset', false);
      case 'range-preset':
        state.range = target.value === 'custom' ? customFrom(state.range) : { preset: target.value };
        return changed();
      case 'range-mode':
        state.range = { ...state.range, mode: target.value };
        return changed();
      case 'range-unit':
        state.range = { ...state.range, unit: target.value };
        return changed();
      case 'agg-fn': {
        const agg = state.aggregates[i];
        agg.fn = target.value;
        if (!fieldChoices(agg.fn, '').some(([v]) => v === agg.field)) agg.field = defaultField(agg.fn);
        return changed();
      }
      case 'agg-field':
        state.aggregates[i].field = target.value;
        return changed();
      case 'where-join':
        state.where[i].join = target.value;
        return changed();
      case 'where-field': {
        const row = state.where[i];
        row.field = target.value;
        if (!OPERATORS[fieldType(fields, row.field)].includes(row.op)) row.op = '=';
        return changed();
      }
      case 'where-op':
        state.where[i].op = target.value;
        return changed();
      case 'group-field':
        state.groupBy[i] = target.value;
        return changed();
      case 'bucket':
        state.bucket = target.value;
        return changed();
      case 'order-by':
        state.orderBy = target.value;
        return changed();
      case 'order-dir':
        state.orderDir = target.value;
        return changed();
    }
  });

  // Typing updates the SQL at once, without redrawing the box being typed in.
  form.addEventListener('input', (event) => {
    const target = event.target;
    const i = Number(target.dataset.index);
    switch (target.dataset.testid) {
      case 'where-value':
        state.where[i].value = target.value;
        return changed('query', false);
      case 'having':
        state.having = target.value;
        return changed('query', false);
      case 'limit':
        state.limit = target.value === '' ? '' : Number(target.value);
        return changed('query', false);
      case 'range-amount':
        state.range = { ...state.range, amount: target.value === '' ? '' : Number(target.value) };
        return changed('query', false);
      case 'range-from':
      case 'range-to':
        state.range = { ...state.range, [target.dataset.testid.slice(6)]: target.value };
        return changed('query', false);
    }
  });

  form.addEventListener('click', (event) => {
    const button = event.target.closest('button');
    if (!button || !form.contains(button)) return;
    const i = Number(button.dataset.index);
    const focusLast = (testid) => [...form.querySelectorAll(`[data-testid="${testid}"]`)].pop()?.focus();
    switch (button.dataset.testid) {
      case 'agg-add':
        state.aggregates.push({ fn: 'count', field: '' });
        changed();
        return focusLast('agg-fn');
      case 'where-add':
        state.where.push({ field: '', op: '=', value: '', join: 'AND' });
        changed();
        return focusLast('where-field');
      case 'group-add':
        state.groupBy.push('');
        changed();
        return focusLast('group-field');
      case 'agg-remove':
        state.aggregates.splice(i, 1);
        changed();
        return byTestId('agg-add', form).focus();
      case 'where-remove':
        state.where.splice(i, 1);
        changed();
        return byTestId('where-add', form).focus();
      case 'group-remove':
        state.groupBy.splice(i, 1);
        changed();
        return byTestId('group-add', form).focus();
    }
  });

  return {
    get state() {
      return state;
    },
    get fields() {
      return fields;
    },
    // A new state (from SQL, a permalink, a recent query) and the fields of its dataset.
    set(newState, newFields = fields) {
      state = structuredClone(newState);
      fields = newFields;
      parts.dataset.value = state.dataset;
      render();
    },
    setFields(newFields) {
      fields = newFields;
      for (const agg of state.aggregates) {
        if (!agg.field && !fieldChoices(agg.fn, '').some(([v]) => v === '')) agg.field = defaultField(agg.fn);
      }
      render();
    },
  };
}
