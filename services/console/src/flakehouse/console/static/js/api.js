// The console's JSON API (/api/v1/…), same origin, with the sign-in cookie the browser sends.
// A 401 anywhere tells the page to show the sign-in form (see session.js).

export class ApiError extends Error {
  constructor(status, code, message, { line, column } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.line = line;
    this.column = column;
  }
}

export const UNAUTHENTICATED_EVENT = 'flakehouse:unauthenticated';

// Python's json writes NaN and ±Infinity bare (a float column may hold them), which JSON.parse
// refuses: read them outside strings as the numbers they are.
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    if (!/NaN|Infinity/.test(text)) throw error;
    const marked = text.replace(/"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)/g, (match, special) =>
      special ? `{"$nonfinite":"${special}"}` : match,
    );
    return JSON.parse(marked, (key, value) =>
      value && typeof value === 'object' && Object.keys(value).length === 1 && '$nonfinite' in value
        ? Number(value.$nonfinite)
        : value,
    );
  }
}

async function call(method, path, { params, body, signal } = {}) {
  const query = params ? `?${new URLSearchParams(params)}` : '';
  const init = { method, credentials: 'same-origin', signal, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path + query, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'UNAVAILABLE', `the console did not answer (${error.message})`);
  }
  const text = await response.text();
  let payload = null;
  try {
    payload = parseJson(text);
  } catch {
    // an answer that is not JSON (a proxy's error page): reported below by its status
  }
  if (response.ok && payload !== null) return payload;
  const error = payload?.error ?? {};
  const message = error.message || `${response.status} ${response.statusText}`.trim();
  if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHENTICATED_EVENT));
  throw new ApiError(response.status, error.code || `HTTP_${response.status}`, message, error);
}

export const getSession = () => call('GET', '/api/v1/session');
export const signIn = (token) => call('POST', '/api/v1/session', { body: { token } });
export const signOut = () => call('DELETE', '/api/v1/session');
export const listDatasets = () => call('GET', '/api/v1/datasets');
export const describe = (name) => call('GET', `/api/v1/datasets/${encodeURIComponent(name)}`);

// POST, not GET: a long SQL text fits in a body, and stays out of the server's access logs.
export function query(sql, { timeZone = '', signal } = {}) {
  return call('POST', '/api/v1/query', { body: { sql, time_zone: timeZone, with: 'stats' }, signal });
}

export function flaky(params, { signal } = {}) {
  return call('GET', '/api/v1/flaky', { params: { ...params, with: 'stats' }, signal });
}

// What an error says to the person who asked: PERMISSION_DENIED names what was refused.
export function describeError(error) {
  if (error.code === 'PERMISSION_DENIED') return `Permission denied: ${error.message}`;
  if (error.status === 401) return `Not signed in: ${error.message}`;
  return error.message;
}
