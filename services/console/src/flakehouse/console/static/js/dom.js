// A few DOM helpers, so that modules build elements without innerHTML (no markup from data).

// el('button', {type: 'button', dataset: {testid: 'run'}, onclick: run}, 'Run')
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'value') continue; // set once the options or text are in place, below
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  if (props.value !== undefined && props.value !== null) node.value = props.value;
  return node;
}

export function option(value, label = value, selected = false) {
  return new Option(label, value, selected, selected);
}

// Replaces a <select>'s options, keeping `value` selected when it is still offered.
export function setOptions(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => option(v, label)));
  if (options.some(([v]) => v === value)) select.value = value;
}

export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

export function show(node, visible = true) {
  node.hidden = !visible;
}
