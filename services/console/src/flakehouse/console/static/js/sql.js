// Writing SQL text for Flakehouse's dialect (services/query/SQL.md): names and literals.

// Words that cannot name a field unquoted (sqlglot reads them as keywords).
const RESERVED = new Set(
  ('all and any as asc between by case cast cross desc distinct else end exists false filter ' +
    'from full group having ilike in inner interval is join left like limit natural not null ' +
    'offset on or order outer right select then true union using when where with').split(' '),
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
