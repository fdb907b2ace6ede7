// The page's state, shared by table.js, detail.js, auth.js and main.js.

import { parseView } from './view.js';

export const state = {
  sessions: new Map(), // id -> session
  rows: new Map(), // id -> {tr, cells: {key: td}, texts: {key: text}}
  loaded: false, // at least one init / snapshot applied
  view: parseView(location.search),
  auth: { token_required: false, authenticated: true, role: 'admin', name: 'local' }, // GET /auth
  notify: false,
  away: null, // the last GET / PUT /away answer
  detail: null, // the last /sessions/{id} answer for the selected session
  forbidden: false, // the server answered 403 to an action with this person's token
};
