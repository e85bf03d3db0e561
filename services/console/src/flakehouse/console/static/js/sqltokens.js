// SQL text → tokens, and the canonical form of a statement that tells whether two texts say
// the same thing (keywords in any case, names quoted or not, spacing and comments aside).
import { quoteIdent } from './sql.js';

const TOKEN = new RegExp(
  [
    /(?<space>\s+|--[^\n]*|\/\*[\s\S]*?\*\/)/,
    /(?<string>'(?:[^']|'')*')/,
    /(?<quoted>"(?:[^"]|"")*")/,
    /(?<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)/,
    /(?<word>[A-Za-z_][A-Za-z0-9_]*)/,
    /(?<op><>|!=|<=|>=|\|\||::|[-+*/%(),.;=<>])/,
  ]
    .map((part) => part.source)
    .join('|'),
  'y',
);

// Words that are syntax, never names, in the statements the builder writes and reads.
export const KEYWORDS = new Set(
  ('all and as asc between by case desc distinct else end false filter from group having ilike ' +
    'in interval is like limit not null offset on or order select then true when where with')
    .split(' '),
);

// Each token: {kind: "string" | "name" | "number" | "op" | "word", text, value, start, end}.
// `name` is a field or dataset name (a quoted name, or a bare word that is not a keyword, dotted
// parts joined: prop.os.name); `value` is a string's or name's text without quotes. Throws on a
// character the dialect has no use for.
export function tokenize(sql) {
  const tokens = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < sql.length) {
    const start = TOKEN.lastIndex;
    const match = TOKEN.exec(sql);
    if (!match) throw new SyntaxError(`unexpected ${JSON.stringify(sql[start])} at ${start}`);
    const g = match.groups;
    const end = TOKEN.lastIndex;
    if (g.space) continue;
    if (g.string) tokens.push({ kind: 'string', text: g.string, value: g.string.slice(1, -1).replaceAll("''", "'"), start, end });
    else if (g.quoted) tokens.push({ kind: 'name', text: g.quoted, value: g.quoted.slice(1, -1).replaceAll('""', '"'), start, end });
    else if (g.number) tokens.push({ kind: 'number', text: g.number, value: g.number, start, end });
    else if (g.op) tokens.push({ kind: 'op', text: g.op === '<>' ? '!=' : g.op, value: g.op, start, end });
    else if (KEYWORDS.has(g.word.toLowerCase())) tokens.push({ kind: 'word', text: g.word.toLowerCase(), value: g.word, start, end });
    else tokens.push({ kind: 'name', text: g.word, value: g.word, start, end, bare: true });
  }
  return joinDottedNames(tokens);
}

// prop . os . name (bare words) → one name, as the service reads a dotted name.
function joinDottedNames(tokens) {
  const out = [];
  for (const token of tokens) {
    const previous = out[out.length - 1];
    const dot = out[out.length - 2];
    if (token.kind === 'name' && token.bare && previous?.text === '.' && dot?.kind === 'name' && dot.bare &&
        dot.end === previous.start && previous.end === token.start) {
      out.splice(-2, 2, { ...dot, value: `${dot.value}.${token.value}`, text: `${dot.value}.${token.value}`, end: token.end });
    } else {
      out.push(token);
    }
  }
  return out;
}

// The canonical text of one token: names quoted only where they must be, function names and
// keywords in lower case, strings re-quoted. A bare word before "(" is a function.
function canonical(token, next) {
  if (token.kind === 'name') {
    if (token.bare && next?.text === '(') return token.value.toLowerCase();
    return quoteIdent(token.value);
  }
  if (token.kind === 'string') return "'" + token.value.replaceAll("'", "''") + "'";
  return token.text;
}

// The statement as a list of canonical tokens: a trailing ";" and ASC (the default order) are
// dropped. Throws like tokenize.
export function canonicalTokens(sql) {
  const tokens = tokenize(sql).filter((t) => t.text !== 'asc');
  while (tokens.length && tokens[tokens.length - 1].text === ';') tokens.pop();
  return tokens.map((token, i) => canonical(token, tokens[i + 1]));
}

export function sameStatement(a, b) {
  try {
    const x = canonicalTokens(a);
    const y = canonicalTokens(b);
    return x.length === y.length && x.every((t, i) => t === y[i]);
  } catch {
    return false;
  }
}
