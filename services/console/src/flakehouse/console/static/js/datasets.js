// Datasets and their fields (DESCRIBE through GET /api/v1/datasets/{name}), asked once per page.
import * as api from './api.js';
import { setOptions } from './dom.js';

const described = new Map();

// Map field name → type. A field seen with several types is "mixed"; `timestamp` is a time.
export function fieldsOf(dataset) {
  if (!described.has(dataset)) {
    const promise = api.describe(dataset).then((answer) => {
      const fields = new Map();
      for (const { name, type } of answer.fields) {
        fields.set(name, fields.has(name) && fields.get(name) !== type ? 'mixed' : type);
      }
      fields.set('timestamp', 'timestamp');
      return fields;
    });
    promise.catch(() => described.delete(dataset)); // ask again next time
    described.set(dataset, promise);
  }
  return described.get(dataset);
}

// The session's datasets into a <select>, keeping `preferred` selected when it is readable.
export function fillDatasets(select, datasets, preferred) {
  const names = datasets.map((d) => d.name);
  setOptions(select, names.map((n) => [n, n]), preferred && names.includes(preferred) ? preferred : select.value);
  return select.value;
}

export function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

// Every IANA zone the browser knows, UTC first.
export function timeZones() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return ['UTC', ...zones.filter((z) => z !== 'UTC')];
}
