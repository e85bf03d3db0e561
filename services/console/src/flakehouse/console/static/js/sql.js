// Writing SQL text for Flakehouse's dialect (services/query/SQL.md): names and literals.

// Words that cannot name a field unquoted: those that sqlglot, with the query service's dialect,
// does not read as a plain name in SELECT, WHERE and GROUP BY (some parse as something else
// without an error: `current_date`), found by trying every keyword of its tokenizer; and
// SQL's clause words.
const RESERVED = new Set(
  ('all alter and any as asc between by case cast create cross cube current_catalog current_date ' +
    'current_time current_timestamp current_user desc distinct drop else end except exists false ' +
    'fetch filter for from full glob grant group having ilike in inner insert intersect interval ' +
    'into is join lateral left like limit localtime localtimestamp lock natural not notnull null ' +
    'offset on or order outer partitioned_by qualify regexp returning revoke right rlike ' +
    'rollback rollup select session_user straight_join tablesample then true uncache union ' +
    'using when where window with xor').split(' '),
);

// A field or dataset name, quoted when it must be: dotted names, dashes, a leading digit, a
// keyword. Quoting is always correct; bare names are just easier to read.
export function quoteIdent(name) {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !RESERVED.has(name.toLowerCase())) return name;
  return '"' + name.replaceAll('"', '""') + '"';
}

export function quoteString(text) {
  return "'" + String(text).replaceAll("'", "''") + "'";
}

const NUMBER = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

// A value typed into the builder as a literal for a field of `type` ("string", "int", "float",
// "bool", "timestamp", or "mixed" for a field seen with several types): numbers stay numbers
// for numeric fields (a string never compares equal to a number), times are strings.
export function literal(value, type) {
  const text = String(value).trim();
  if ((type === 'int' || type === 'float' || type === 'mixed') && NUMBER.test(text)) return text;
  if ((type === 'bool' || type === 'mixed') && /^(true|false)$/i.test(text)) return text.toUpperCase();
  return quoteString(type === 'string' ? value : text);
}

// "a, b ,c" → ["a", "b", "c"]: the values of an IN condition as typed in one box.
export function splitList(text) {
  return String(text)
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
}
