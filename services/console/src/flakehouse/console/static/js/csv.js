// CSV export: the answer's rows as `flakehouse query --format csv` writes them (full floats,
// empty cells for NULL; the table's rounding is for reading, not for the file), quoted as
// RFC 4180 says, made in the browser (no second trip to the server).
import { pythonFloat } from './format.js';

// One value as the CLI's CSV has it: Python's csv module writing the answer's values.
export function csvValue(value, type) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') {
    const isFloat = type === 'float' || (type !== 'int' && !Number.isInteger(value));
    return isFloat ? pythonFloat(value) : String(value);
  }
  return String(value);
}

export function csvField(text) {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(columns, rows, types = []) {
  const lines = [columns.map(csvField).join(',')];
  for (const row of rows) {
    lines.push(row.map((value, i) => csvField(csvValue(value, types[i]))).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

const pad = (n) => String(n).padStart(2, '0');

// flakehouse-ci-20261120-091403.csv (local time: when the person downloaded it)
export function csvFilename(dataset, date = new Date()) {
  const day = `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
  return `flakehouse-${dataset || 'query'}-${day}-${time}.csv`;
}

export function downloadCsv(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const link = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  // Revoked after the click has started the download.
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
