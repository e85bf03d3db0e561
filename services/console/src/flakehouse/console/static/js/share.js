// The "share this query" panel: its permalink, the CLI command and the curl call, each with a
// copy button.
import { byTestId } from './dom.js';
import { permalink, cliCommand, curlCommand } from './permalink.js';

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // Plain http on another host has no clipboard API: select a hidden box and copy that.
  const box = Object.assign(document.createElement('textarea'), { value: text, readOnly: true });
  box.className = 'visually-hidden';
  document.body.append(box);
  box.select();
  const ok = document.execCommand('copy');
  box.remove();
  if (!ok) throw new Error('copy refused');
}

export function createShare(root) {
  const link = byTestId('permalink', root);
  const cli = byTestId('cli-command', root);
  const curl = byTestId('api-call', root);
  root.addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-copy]');
    if (!button) return;
    const source = byTestId(button.dataset.copy, root);
    const label = button.textContent;
    try {
      await copyText(source.textContent);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Copy failed: select the text';
    }
    setTimeout(() => (button.textContent = label), 1500);
  });
  return {
    update(sql, timeZone) {
      link.href = permalink(sql, timeZone);
      cli.textContent = cliCommand(sql, timeZone);
      curl.textContent = curlCommand(sql, timeZone, window.location.origin);
    },
  };
}
