// The LIVE banner in the header: shown while any `sessionwatch run` reports
// that it is starting, running or waiting (its name, cost so far and turns),
// gone when none is. A click on a run opens its detail.

import { $, h } from './dom.js';
import { liveRunText, liveRuns } from './managed.js';
import { state } from './state.js';

let opened = () => {};
let shownKey = '';

export function bindBanner({ open }) {
  opened = open;
}

/** Draw the banner from the sessions held (after every change the table applies). */
export function drawBanner() {
  const runs = liveRuns(state.sessions.values());
  const key = JSON.stringify(runs);
  if (key === shownKey) return;
  shownKey = key;
  const el = $('live-banner');
  el.hidden = runs.length === 0;
  el.replaceChildren(
    ...(runs.length
      ? [
          h('span', { class: 'live-word' }, 'LIVE'),
          ...runs.map((run) =>
            h(
              'button',
              { type: 'button', class: 'live-run link', dataset: { id: run.id }, title: `${run.state}: open its detail`, onclick: () => opened(run.id) },
              liveRunText(run),
            ),
          ),
        ]
      : []),
  );
}
