// Fakes for driving the connection state machine without a browser or a server.

/** A clock whose time only moves when the test says so. */
export class FakeClock {
  constructor() {
    this._now = 0;
    this._nextHandle = 1;
    this._timers = new Map(); // handle -> {at, fn}
  }

  now() {
    return this._now;
  }

  setTimeout(fn, ms) {
    const handle = this._nextHandle++;
    this._timers.set(handle, { at: this._now + Math.max(0, ms), fn });
    return handle;
  }

  clearTimeout(handle) {
    this._timers.delete(handle);
  }

  /** Delays (ms from now) of the pending timers, sorted. */
  pending() {
    return [...this._timers.values()].map((t) => t.at - this._now).sort((a, b) => a - b);
  }

  /** Move time forward by `ms`, firing due timers in order. */
  async advance(ms) {
    const until = this._now + ms;
    for (;;) {
      let next = null;
      for (const [handle, t] of this._timers) {
        if (t.at <= until && (next === null || t.at < next[1].at)) next = [handle, t];
      }
      if (next === null) break;
      this._timers.delete(next[0]);
      this._now = next[1].at;
      next[1].fn();
      await flush();
    }
    this._now = until;
    await flush();
  }
}

/** Let pending promise callbacks (a fake fetch's answer) run. */
export async function flush() {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** An EventSource stand-in that records every instance and is driven by hand. */
export function makeFakeEventSource() {
  const instances = [];

  class FakeEventSource {
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.readyState = 0;
      this.closed = false;
      this.listeners = new Map();
      this.onopen = null;
      this.onerror = null;
      instances.push(this);
    }

    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }

    close() {
      this.readyState = 2;
      this.closed = true;
    }

    // --- test controls ---
    open() {
      this.readyState = 1;
      this.onopen?.({ type: 'open' });
    }

    fail() {
      // What a browser does on a refused connection or a non-200 answer.
      this.readyState = 2;
      this.onerror?.({ type: 'error' });
    }

    emit(type, payload, id = '') {
      const event = { type, data: JSON.stringify(payload), lastEventId: String(id) };
      for (const fn of this.listeners.get(type) ?? []) fn(event);
    }
  }

  return { FakeEventSource, instances, latest: () => instances[instances.length - 1] };
}

/**
 * A fetch stand-in: `respond` decides each answer; every call is recorded.
 * `respond(url)` returns {status, body} or throws (network error).
 */
export function makeFakeFetch(respond) {
  const calls = [];
  async function fakeFetch(url, init) {
    calls.push({ url, init });
    const { status, body } = respond(url);
    return {
      status,
      ok: status >= 200 && status < 300,
      json: async () => body,
    };
  }
  return { fetch: fakeFetch, calls };
}

export function session(id, fields = {}) {
  return {
    id,
    source: 'claude',
    project: '/home/me/project',
    title: `session ${id}`,
    status: 'running',
    tokens: { input: 0, output: 0, cache_creation: 0, cache_read: 0 },
    ...fields,
  };
}
