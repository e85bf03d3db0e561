// The SQL the builder writes, read back into the builder's state, so that editing the SQL
// updates the builder. Only the builder's own shapes are read: fromSql then builds the state
// again and keeps it only when that gives the same statement, so the builder never shows a
// query other than the one that runs.
import { tokenize, sameStatement } from './sqltokens.js';
import {
  AGGREGATES, BUCKETS, BUCKET_ALIAS, FAILURE_RATE, FAILURE_RATE_ALIAS, buildSql, newState, outputColumns,
} from './sqlbuild.js';
import { rangeFromBounds, rangeFromInterval } from './timerange.js';

export class Unreadable extends Error {}

// --- expressions ----------------------------------------------------------------------------

// A small precedence-climbing parser: enough of SQL's expressions for WHERE, SELECT items and
// ORDER BY. Nodes: {t: "num" | "str" | "bool" | "null" | "name" | "star" | "interval" | "call" |
// "bin" | "not" | "neg" | "in" | "like" | "isnull", …}.
class Parser {
  constructor(tokens) {
    this.tokens = tokens;
    this.i = 0;
  }
  peek(offset = 0) {
    return this.tokens[this.i + offset];
  }
  next() {
    const token = this.tokens[this.i++];
    if (!token) throw new Unreadable('the statement ends too early');
    return token;
  }
  accept(text) {
    if (this.peek()?.text === text) return this.next();
    return null;
  }
  expect(text) {
    const token = this.next();
    if (token.text !== text) throw new Unreadable(`expected ${text}, found ${token.text}`);
    return token;
  }
  atEnd() {
    return this.i >= this.tokens.length;
  }

  expression() {
    return this.or();
  }
  or() {
    let left = this.and();
    while (this.accept('or')) left = { t: 'bin', op: 'or', left, right: this.and() };
    return left;
  }
  and() {
    let left = this.not();
    while (this.accept('and')) left = { t: 'bin', op: 'and', left, right: this.not() };
    return left;
  }
  not() {
    if (this.accept('not')) return { t: 'not', e: this.not() };
    return this.comparison();
  }
  comparison() {
    const left = this.additive();
    const token = this.peek();
    if (!token) return left;
    if (['=', '!=', '<', '<=', '>', '>='].includes(token.text)) {
      this.next();
      return { t: 'bin', op: token.text, left, right: this.additive() };
    }
    if (token.text === 'is') {
      this.next();
      const negated = Boolean(this.accept('not'));
      this.expect('null');
      return { t: 'isnull', e: left, negated };
    }
    const negated = token.text === 'not' && ['in', 'like', 'ilike'].includes(this.peek(1)?.text);
    if (negated) this.next();
    if (this.accept('in')) {
      this.expect('(');
      const list = [this.additive()];
      while (this.accept(',')) list.push(this.additive());
      this.expect(')');
      return { t: 'in', e: left, list, negated };
    }
    const like = this.accept('like') || this.accept('ilike');
    if (like) return { t: 'like', e: left, pattern: this.additive(), negated, ilike: like.text === 'ilike' };
    if (token.text === 'between') throw new Unreadable('BETWEEN');
    return left;
  }
  additive() {
    let left = this.multiplicative();
    while (['+', '-'].includes(this.peek()?.text)) {
      const op = this.next().text;
      left = { t: 'bin', op, left, right: this.multiplicative() };
    }
    return left;
  }
  multiplicative() {
    let left = this.unary();
    while (['*', '/', '%'].includes(this.peek()?.text)) {
      const op = this.next().text;
      left = { t: 'bin', op, left, right: this.unary() };
    }
    return left;
  }
  unary() {
    if (this.accept('-')) return { t: 'neg', e: this.unary() };
    return this.primary();
  }
  primary() {
    const token = this.next();
    switch (token.kind) {
      case 'number':
        return { t: 'num', text: token.text };
      case 'string':
        return { t: 'str', value: token.value };
      case 'name':
        if (this.peek()?.text === '(' && token.bare) return this.call(token.value.toLowerCase());
        return { t: 'name', name: token.value };
    }
    if (token.text === '(') {
      const e = this.expression();
      this.expect(')');
      return { t: 'paren', e };
    }
    if (token.text === '*') return { t: 'star' };
    if (token.text === 'true' || token.text === 'false') return { t: 'bool', value: token.text === 'true' };
    if (token.text === 'null') return { t: 'null' };
    if (token.text === 'interval') {
      const text = this.next();
      if (text.kind !== 'string') throw new Unreadable('INTERVAL without its text');
      return { t: 'interval', value: text.value };
    }
    throw new Unreadable(`unexpected ${token.text}`);
  }
  call(name) {
    this.expect('(');
    const node = { t: 'call', name, args: [], distinct: false };
    if (!this.accept(')')) {
      node.distinct = Boolean(this.accept('distinct'));
      do node.args.push(this.peek()?.text === '*' ? (this.next(), { t: 'star' }) : this.expression());
      while (this.accept(','));
      this.expect(')');
    }
    if (this.peek()?.text === 'filter') throw new Unreadable('FILTER');
    return node;
  }
}

export function parseExpression(tokens) {
  const parser = new Parser(tokens);
  const e = parser.expression();
  if (!parser.atEnd()) throw new Unreadable(`unexpected ${parser.peek().text}`);
  return e;
}

// --- statements -----------------------------------------------------------------------------

const CLAUSES = ['select', 'from', 'where', 'group', 'having', 'order', 'limit', 'offset'];

// Tokens split at commas, or at AND / OR, outside parentheses.
function splitTop(tokens, isSeparator) {
  const parts = [{ separator: null, tokens: [] }];
  let depth = 0;
  for (const token of tokens) {
    if (token.text === '(') depth++;
    if (token.text === ')') depth--;
    if (depth === 0 && isSeparator(token)) parts.push({ separator: token.text, tokens: [] });
    else parts[parts.length - 1].tokens.push(token);
  }
  return parts;
}

// The clauses of one SELECT: {select, from, where, group, having, order, limit} token lists
// (GROUP BY and ORDER BY without their BY), and the SQL text back for HAVING and ORDER BY.
export function splitClauses(sql) {
  let tokens;
  try {
    tokens = tokenize(sql);
  } catch (error) {
    throw new Unreadable(error.message);
  }
  while (tokens.length && tokens[tokens.length - 1].text === ';') tokens.pop();
  if (tokens[0]?.text !== 'select') throw new Unreadable('not a SELECT');
  const clauses = {};
  let current = null;
  let depth = 0;
  for (const token of tokens) {
    if (token.text === '(') depth++;
    if (token.text === ')') depth--;
    if (depth === 0 && token.kind === 'word' && CLAUSES.includes(token.text)) {
      if (token.text in clauses) throw new Unreadable(`two ${token.text} clauses`);
      current = token.text;
      clauses[current] = [];
      continue;
    }
    if (current === 'group' || current === 'order') {
      if (clauses[current].length === 0 && token.text === 'by') continue;
    }
    clauses[current].push(token);
  }
  const text = (list) => (list?.length ? sql.slice(list[0].start, list[list.length - 1].end) : '');
  return { ...clauses, havingText: text(clauses.having) };
}

function isName(node, name) {
  return node?.t === 'name' && (name === undefined || node.name === name);
}

function literalText(node) {
  if (node.t === 'str') return node.value;
  if (node.t === 'num') return node.text;
  if (node.t === 'neg' && node.e.t === 'num') return `-${node.e.text}`;
  if (node.t === 'bool') return node.value ? 'true' : 'false';
  throw new Unreadable('a value that is not a literal');
}

// One SELECT item → what the builder makes of it: {bucket}, {group: field}, {aggregate}.
function readItem(tokens, sql) {
  let alias = null;
  const asAt = tokens.findIndex((t, i) => t.text === 'as' && i === tokens.length - 2);
  if (asAt >= 0) {
    alias = tokens[asAt + 1].value;
    tokens = tokens.slice(0, asAt);
  }
  const text = sql.slice(tokens[0].start, tokens[tokens.length - 1].end);
  if (alias === FAILURE_RATE_ALIAS && sameStatement(text, FAILURE_RATE)) {
    return { aggregate: { fn: 'failure_rate', field: '' } };
  }
  const e = parseExpression(tokens);
  if (alias === BUCKET_ALIAS && e.t === 'call' && e.name === 'time_bucket' && e.args.length === 2 &&
      isName(e.args[0], 'timestamp') && ['interval', 'str'].includes(e.args[1].t) && BUCKETS.includes(e.args[1].value)) {
    return { bucket: e.args[1].value };
  }
  if (alias !== null) throw new Unreadable('a name given with AS');
  if (isName(e)) return { group: e.name };
  if (e.t !== 'call' || e.args.length !== 1) throw new Unreadable(`the SELECT item ${text}`);
  const [arg] = e.args;
  if (e.name === 'count' && arg.t === 'star' && !e.distinct) return { aggregate: { fn: 'count', field: '' } };
  if (!isName(arg)) throw new Unreadable(`the SELECT item ${text}`);
  if (e.name === 'count') return { aggregate: { fn: e.distinct ? 'count_distinct' : 'count', field: arg.name } };
  if (e.distinct || !AGGREGATES.some((a) => a.id === e.name && a.field !== 'optional')) {
    throw new Unreadable(`the SELECT item ${text}`);
  }
  return { aggregate: { fn: e.name, field: arg.name } };
}

// A top-level condition on `timestamp` that a time range writes, or null.
function readBound(e) {
  if (e.t !== 'bin' || !isName(e.left, 'timestamp')) return null;
  if (e.op === '>=' && e.right.t === 'bin' && e.right.op === '-' && e.right.left.t === 'call' &&
      e.right.left.name === 'now' && e.right.left.args.length === 0 && e.right.right.t === 'interval') {
    return { relative: e.right.right.value };
  }
  if (e.op === '>=' && e.right.t === 'str') return { from: e.right.value };
  if (e.op === '<' && e.right.t === 'str') return { to: e.right.value };
  return null;
}

// One WHERE condition as a builder row: field, operator, value.
function readCondition(e) {
  if (e.t === 'isnull' && e.negated && isName(e.e)) return { field: e.e.name, op: 'exists', value: '' };
  if (e.t === 'in' && !e.negated && isName(e.e)) {
    return { field: e.e.name, op: 'in', value: e.list.map(literalText).join(', ') };
  }
  if (e.t === 'like' && !e.negated && !e.ilike && isName(e.e) && e.pattern.t === 'str') {
    const match = /^%([^%_]*)%$/.exec(e.pattern.value);
    if (match) return { field: e.e.name, op: 'contains', value: match[1] };
  }
  if (e.t === 'bin' && ['=', '!=', '<', '>'].includes(e.op) && isName(e.left)) {
    return { field: e.left.name, op: e.op, value: literalText(e.right) };
  }
  throw new Unreadable('a condition the builder has no row for');
}

function readWhere(tokens, state) {
  if (!tokens) {
    state.range = { preset: 'all' };
    return;
  }
  let parts = splitTop(tokens, (t) => t.text === 'and' || t.text === 'or');
  const allAnd = parts.every((p) => p.separator !== 'or');
  if (allAnd) {
    const bounds = {};
    while (parts.length) {
      const bound = readBound(parseExpression(parts[0].tokens));
      if (!bound) break;
      Object.assign(bounds, bound);
      parts = parts.slice(1);
    }
    if (bounds.relative) state.range = rangeFromInterval(bounds.relative);
    else if (bounds.from || bounds.to) state.range = rangeFromBounds(bounds.from, bounds.to);
    else state.range = { preset: 'all' };
    if (!state.range) throw new Unreadable('a time range the builder cannot show');
    const inner = parts.length === 1 ? parts[0].tokens : null;
    if (Object.keys(bounds).length && inner?.[0].text === '(' && inner[inner.length - 1].text === ')') {
      parts = splitTop(inner.slice(1, -1), (t) => t.text === 'and' || t.text === 'or');
    }
  } else {
    state.range = { preset: 'all' };
  }
  parts.forEach((part, i) => {
    if (i === 0) part.separator = 'and';
    state.where.push({ ...readCondition(parseExpression(part.tokens)), join: part.separator.toUpperCase() });
  });
}

// The dataset a statement reads (FROM), or null when it is not one SELECT from one dataset.
export function datasetOf(sql) {
  try {
    const { from } = splitClauses(sql);
    return from?.length === 1 && from[0].kind === 'name' ? from[0].value : null;
  } catch {
    return null;
  }
}

// SQL → builder state, given the dataset's fields (Map name → type). Throws Unreadable when
// the builder cannot show the statement as it is.
export function fromSql(sql, fields) {
  const clauses = splitClauses(sql);
  if (clauses.offset) throw new Unreadable('OFFSET');
  const dataset = datasetOf(sql);
  if (!dataset || !clauses.select?.length) throw new Unreadable('not a SELECT from one dataset');
  const state = newState(dataset);
  state.aggregates = [];
  for (const { tokens } of splitTop(clauses.select, (t) => t.text === ',')) {
    if (!tokens.length) throw new Unreadable('an empty SELECT item');
    const item = readItem(tokens, sql);
    if (item.bucket !== undefined) state.bucket = item.bucket;
    else if (item.group !== undefined) state.groupBy.push(item.group);
    else state.aggregates.push(item.aggregate);
  }
  if (!clauses.group && !state.aggregates.length && !state.bucket) {
    state.columns = state.groupBy; // raw rows: the fields listed
    state.groupBy = [];
  }
  readWhere(clauses.where, state);
  state.having = clauses.havingText;
  if (clauses.order) {
    const items = splitTop(clauses.order, (t) => t.text === ',');
    if (items.length !== 1) throw new Unreadable('ORDER BY more than one column');
    let tokens = items[0].tokens;
    state.orderDir = 'ASC';
    const last = tokens[tokens.length - 1]?.text;
    if (last === 'desc' || last === 'asc') {
      state.orderDir = last.toUpperCase();
      tokens = tokens.slice(0, -1);
    }
    const text = sql.slice(tokens[0].start, tokens[tokens.length - 1].end);
    const column = outputColumns(state, fields).find((c) => sameStatement(c.sql, text));
    if (!column) throw new Unreadable('ORDER BY something that is not a column of the answer');
    state.orderBy = column.sql;
  }
  state.limit = '';
  if (clauses.limit) {
    if (clauses.limit.length !== 1 || clauses.limit[0].kind !== 'number') throw new Unreadable('LIMIT');
    state.limit = Number(clauses.limit[0].text);
  }
  if (!sameStatement(buildSql(state, fields), sql)) throw new Unreadable('a shape the builder does not write');
  return state;
}
