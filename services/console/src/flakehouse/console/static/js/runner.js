// Runs one query at a time: the elapsed time every 100 ms while it runs, a Cancel button that
// aborts the request (the server then cancels the query), and "Cancelled" after.
import { formatDuration } from './format.js';

// status: the visible line ("Running… 2.3 s"); announce: a polite live region that says only
// when a query starts and ends (not every tick).
export function createRunner({ status, announce, cancelButton }) {
  let current = null;
  cancelButton.addEventListener('click', () => current?.abort());

  function say(text, spoken = text) {
    status.textContent = text;
    if (announce && spoken !== null) announce.textContent = spoken;
  }

  // task(signal) → Promise. Resolves {result} or {cancelled: true}; rejects with task's error.
  async function run(task) {
    current?.abort();
    const controller = new AbortController();
    current = controller;
    const started = performance.now();
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    say('Running… 0.0 s', 'Query running');
    const ticker = setInterval(() => current === controller && say(`Running… ${seconds()} s`, null), 100);
    cancelButton.hidden = false;
    const mine = () => current === controller;
    try {
      const result = await task(controller.signal);
      if (mine()) say(`Done in ${formatDuration(performance.now() - started)}`, 'Query done');
      return { result, superseded: !mine() };
    } catch (error) {
      if (error.name === 'AbortError') {
        if (mine()) say('Cancelled');
        return { cancelled: true, superseded: !mine() };
      }
      if (mine()) say(`Failed after ${formatDuration(performance.now() - started)}`, 'Query failed');
      throw error;
    } finally {
      clearInterval(ticker);
      if (mine()) {
        cancelButton.hidden = true;
        current = null;
      }
    }
  }

  return { run, cancel: () => current?.abort(), get running() { return current !== null; } };
}
