// What every part of the page uses to touch the DOM: lookup by id, element
// creation, and the transient message line.
//
// Every piece of session data reaches the page through textContent or an
// attribute, never through innerHTML: transcript titles are untrusted.

export const $ = (id) => document.getElementById(id);

/** Make an element: h('td', {class: 'x', dataset: {col: 'a'}}, 'text', child). Strings become text nodes. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let messageTimer = null;

/** Show `text` in the message line for a few seconds. */
export function showMessage(text) {
  const el = $('message');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
}
