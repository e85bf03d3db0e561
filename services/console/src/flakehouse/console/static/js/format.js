// How a value of an answer is shown: as the CLI's table prints it (flakehouse.client.output).

// Python's f"{x:.6g}" (any precision): `precision` significant digits, fixed notation when the
// exponent is in [-4, precision), scientific otherwise, trailing zeros dropped.
export function formatG(x, precision = 6) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const sign = x < 0 ? '-' : '';
  const [digits, exp] = roundSignificant(Math.abs(x), precision);
  if (exp >= -4 && exp < precision) {
    const whole = exp >= 0 ? digits.slice(0, exp + 1) : '0';
    const fraction = (exp >= 0 ? digits.slice(exp + 1) : '0'.repeat(-exp - 1) + digits).replace(/0+$/, '');
    return sign + whole + (fraction ? '.' + fraction : '');
  }
  const rest = digits.slice(1).replace(/0+$/, '');
  const exponent = String(Math.abs(exp)).padStart(2, '0');
  return `${sign}${digits[0]}${rest ? '.' + rest : ''}e${exp < 0 ? '-' : '+'}${exponent}`;
}

// The first `precision` significant digits of x > 0, rounded as Python rounds them, and the
// decimal exponent of the first one.
function roundSignificant(x, precision) {
  const [mantissa, e] = x.toExponential(precision - 1).split('e');
  // toExponential rounds an exact tie away from zero; Python (correctly rounded repr) rounds it
  // to even. A tie is a finite expansion ending in 5 just past the last kept digit: a double's
  // expansion that short is exact in 101 significant digits.
  const [longMantissa, longE] = x.toExponential(100).split('e');
  const exact = longMantissa.replace('.', '');
  const isTie = exact[precision] === '5' && /^0*$/.test(exact.slice(precision + 1));
  if (isTie && Number(exact[precision - 1]) % 2 === 0) {
    return [exact.slice(0, precision), Number(longE)];
  }
  return [mantissa.replace('.', ''), Number(e)];
}

// 1234567 → "1,234,567" (the table groups thousands; CSV does not).
export function formatInt(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

// A cell's text. `type` is the column's type from the answer ("int", "float", "string",
// "bool", "timestamp"; anything else when a column mixes types, when a value's own kind
// decides). `grouping` adds thousands separators to ints.
export function formatCell(value, type, { grouping = true } = {}) {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    const isFloat = type === 'float' || (type !== 'int' && !Number.isInteger(value));
    if (isFloat) return formatG(value);
    return grouping ? formatInt(value) : String(value);
  }
  return String(value); // strings, and times as the RFC 3339 text received
}

// "1.234 s", "340 ms": how long a query took.
export function formatDuration(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10000 ? 1 : 2)} s` : `${Math.round(ms)} ms`;
}

// Python's repr() of a float: what the CLI's CSV writes (the shortest text that reads back as
// the same double, fixed notation from 1e-4 up to 1e16, else 1.5e+16 / 1e-05).
export function pythonFloat(x) {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  // toExponential() with no argument keeps as many digits as the value needs, as repr does.
  const [mantissa, exponentText] = x.toExponential().split('e');
  const exponent = Number(exponentText);
  const sign = x < 0 ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
    return `${sign}${whole}.${digits.slice(exponent + 1) || '0'}`;
  }
  const shown = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const magnitude = String(Math.abs(exponent)).padStart(2, '0');
  return `${sign}${shown}e${exponent < 0 ? '-' : '+'}${magnitude}`;
}

// Text for HTML that ECharts' tooltips take as markup: data (a commit label, a status) must
// never become elements there.
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
