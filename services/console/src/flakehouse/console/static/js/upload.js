// Uploading reports from the browser: each file posted to the console, which sends it to ingest
// with the signed-in token (POST /api/v1/datasets/NAME/uploads). Files are sent one at a time, in
// order, so a person sees each one's outcome as it comes; a refused file writes nothing.
import { el } from './dom.js';

export const DATASET_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

// "branch=main\ncommit=abc" (or separated by spaces or commas) → [['branch', 'main'], …];
// throws on a part that is not KEY=VALUE.
export function parseLabels(text) {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((part) => {
      const at = part.indexOf('=');
      if (at < 1) throw new Error(`label "${part}": write it as key=value`);
      return [part.slice(0, at), part.slice(at + 1)];
    });
}

// The request for one file: its URL and content type (the server detects the format).
export function uploadRequest(dataset, filename, labels) {
  const params = new URLSearchParams([['filename', filename], ...labels.map(([k, v]) => ['label', `${k}=${v}`])]);
  const lower = filename.toLowerCase();
  const type = lower.endsWith('.xml')
    ? 'application/xml'
    : /\.(jsonl|ndjson|json)$/.test(lower)
      ? 'application/x-ndjson'
      : 'application/octet-stream';
  return { url: `/api/v1/datasets/${encodeURIComponent(dataset)}/uploads?${params}`, type };
}

// "12 events (failed 1, passed 11)", as `flakehouse ingest` says it.
export function describeUpload(report) {
  const counts = Object.entries(report.by_status).map(([status, n]) => `${status} ${n}`);
  return `${report.events} events${counts.length ? ` (${counts.join(', ')})` : ''}`;
}

async function postFile(dataset, file, labels) {
  const { url, type } = uploadRequest(dataset, file.name, labels);
  const response = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': type, Accept: 'application/json' },
    body: file,
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON (a proxy's page): said by the status below
  }
  if (!response.ok) throw new Error(payload?.error?.message || `${response.status} ${response.statusText}`);
  return payload;
}

// Wires the upload form; onUploaded(dataset) runs after a batch that wrote something.
export function startUploads(form, { onUploaded }) {
  const files = form.querySelector('[data-testid="upload-files"]');
  const dataset = form.querySelector('[data-testid="upload-dataset"]');
  const labels = form.querySelector('[data-testid="upload-labels"]');
  const button = form.querySelector('[data-testid="upload-run"]');
  const status = form.querySelector('[data-testid="upload-status"]');
  const list = form.querySelector('[data-testid="upload-results"]');

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    list.replaceChildren();
    const name = dataset.value.trim();
    let parsed;
    try {
      if (!DATASET_NAME.test(name)) throw new Error('a dataset name is lowercase letters, digits, - and _');
      parsed = parseLabels(labels.value);
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    const chosen = [...files.files];
    button.disabled = true;
    let written = 0;
    for (const [i, file] of chosen.entries()) {
      status.textContent = `Uploading ${i + 1} of ${chosen.length}: ${file.name}…`;
      try {
        const report = await postFile(name, file, parsed);
        written += 1;
        list.append(el('li', { class: 'ok' }, `${file.name}: ${describeUpload(report)}`));
      } catch (error) {
        list.append(el('li', { class: 'refused' }, `${file.name}: ${error.message}`));
      }
    }
    button.disabled = false;
    const refused = chosen.length - written;
    status.textContent = `${written} of ${chosen.length} uploaded${refused ? `; ${refused} refused (nothing of them written)` : ''}.`;
    if (written) onUploaded(name);
  });
}
