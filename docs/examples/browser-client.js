// browser-client.js - a ringcast subscriber for the browser: one plain ES module, no build step,
// no dependencies. Copy it next to your page and import it:
//
//   import { RingcastSubscriber } from './browser-client.js';
//   const sub = new RingcastSubscriber('wss://rt.example.com/ws', ['workflow:42', 'global'],
//                                      { token: jwtFromYourBackend });
//   sub.on('workflow.stage_completed', (ev) => render(ev.data));
//   sub.on('*', (ev) => console.debug(ev.event, ev.data));     // events without a handler
//   sub.onResync((room) => refetchFromYourBackend(room));       // history lost: reload state
//   sub.start();
//   ...
//   await sub.close();                                          // close code 1000
//
// The same pattern as docs/examples/subscriber.py (docs/integration.md, "Subscribers:
// reconnect and resume"):
// - after any failure it reconnects with exponential backoff and full jitter: the n-th retry
//   waits a random time in [0, min(cap, base * 2^n)] ms, so the browsers a server restart cut off
//   do not all come back in the same instant; the count resets once every room is subscribed;
// - per room it keeps the epoch and the last seq it handled (the subscribe response's seq
//   until an event comes), and resubscribes with
//   {since, epoch}: the engine replays what was missed, so each event reaches the handlers
//   exactly once and in order; "recovered": false calls the resync hooks;
// - a browser cannot send WebSocket pings, so when the connection has been quiet for
//   pingInterval ms it sends a ping request and reconnects if no answer comes within
//   pingTimeout ms (a laptop that slept, a proxy that dropped the connection silently);
// - the token goes in the `bearer` subprotocol (a browser cannot set headers; docs/security.md).
//
// tests/clients/test_examples.py runs it in headless Chromium through a proxy that it cuts.

export class RingcastSubscriber {
  constructor(url, rooms, options = {}) {
    this.url = url;
    this.token = options.token || null;
    this.backoffBase = options.backoffBase ?? 500; // ms
    this.backoffCap = options.backoffCap ?? 30000; // ms
    this.pingInterval = options.pingInterval ?? 20000; // ms
    this.pingTimeout = options.pingTimeout ?? 20000; // ms
    this.log = options.log || ((level, msg) => console[level]('ringcast: ' + msg));
    this.rooms = new Map(rooms.map((r) => [r, { epoch: null, seq: null }]));
    this.handlers = new Map();
    this.resyncHooks = [];
    this.ws = null;
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    this.closed = null; // resolves when close() has finished
  }

  // handler(envelope) for events named `event` ('*': events without a handler of their own).
  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(handler);
    return this;
  }

  // hook(room, reason) when events of `room` may be lost for good: refetch its state.
  onResync(hook) {
    this.resyncHooks.push(hook);
    return this;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  // Closes with 1000 and stops reconnecting; resolves once the socket is closed.
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      ws.addEventListener('close', () => resolve());
      ws.close(1000, 'bye');
    });
  }

  connect() {
    const ws = this.token ? new WebSocket(this.url, ['bearer', this.token]) : new WebSocket(this.url);
    this.ws = ws;
    const pending = new Map(); // request id -> room, subscribes not answered yet
    let healthy = false;
    let lastRx = Date.now();
    let pingSent = 0;

    ws.addEventListener('open', () => {
      this.log('info', `connected to ${this.url}`);
      let i = 0;
      for (const [room, st] of this.rooms) {
        const data = { channel: room };
        // Resume: what came after the last seq we handled in that epoch (or, when no event
        // came yet, the subscribe response's seq: where our live events began).
        if (st.epoch !== null) Object.assign(data, { since: st.seq ?? 0, epoch: st.epoch });
        const id = `sub-${i++}`;
        pending.set(id, room);
        ws.send(JSON.stringify({ type: 'request', event: 'subscribe', data, id }));
      }
    });

    ws.addEventListener('message', (e) => {
      lastRx = Date.now();
      pingSent = 0;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (err) {
        this.log('error', 'unparsable message: ' + String(e.data).slice(0, 80));
        return;
      }
      this.dispatch(msg, pending);
      if (!healthy && pending.size === 0) {
        healthy = true;
        this.attempt = 0;
      }
    });

    // Keepalive: a quiet connection is asked for a pong; one that stays silent is dropped.
    const keepalive = setInterval(() => {
      const quiet = Date.now() - lastRx;
      if (pingSent && Date.now() - pingSent > this.pingTimeout) {
        this.log('warn', `no answer to a ping in ${this.pingTimeout} ms: reconnecting`);
        ws.close(4000, 'ping timeout'); // the close event below schedules the reconnect
      } else if (!pingSent && quiet > this.pingInterval && ws.readyState === WebSocket.OPEN) {
        pingSent = Date.now();
        ws.send(JSON.stringify({ type: 'request', event: 'ping', id: 'keepalive' }));
      }
    }, Math.min(this.pingInterval, this.pingTimeout) / 4);

    ws.addEventListener('close', (e) => {
      clearInterval(keepalive);
      if (this.ws === ws) this.ws = null;
      if (this.stopped) {
        this.log('info', `closed (${e.code})`);
        return;
      }
      this.log('warn', `connection closed: code ${e.code}`);
      if (!healthy) this.attempt++;
      const delay = Math.random() * Math.min(this.backoffCap, this.backoffBase * 2 ** this.attempt);
      this.log('info', `reconnecting in ${(delay / 1000).toFixed(2)} s`);
      this.timer = setTimeout(() => this.connect(), delay);
    });
    // 'error' is always followed by 'close', which does the work.
  }

  dispatch(msg, pending) {
    if (msg.type === 'event' && this.rooms.has(msg.room)) {
      const st = this.rooms.get(msg.room);
      if (typeof msg.seq === 'number' && st.seq !== null) {
        if (msg.seq <= st.seq) return; // handled already: cannot happen after recovered:true
        if (msg.seq !== st.seq + 1) this.resync(msg.room, `gap: seq ${st.seq} -> ${msg.seq}`);
      }
      if (typeof msg.seq === 'number') st.seq = msg.seq;
      const hs = this.handlers.get(msg.event) || this.handlers.get('*') || [];
      for (const h of hs) {
        try {
          h(msg);
        } catch (err) { // a handler's bug must not drop the connection
          this.log('error', `handler for ${msg.event} failed: ${err}`);
        }
      }
    } else if (msg.type === 'response' && msg.event === 'subscribe') {
      const room = pending.get(msg.correlation_id);
      if (room === undefined) return;
      pending.delete(msg.correlation_id);
      const st = this.rooms.get(room);
      const resumed = st.epoch !== null;
      st.epoch = msg.data.epoch;
      // A first subscribe or lost history: the live events follow the response's seq (null
      // from an engine that does not send it: the next event starts the count).
      if (msg.data.recovered !== true) {
        st.seq = typeof msg.data.seq === 'number' ? msg.data.seq : null;
      }
      if (msg.data.recovered === false) {
        this.resync(room, 'history lost (recovered:false)');
      }
      this.log('info', `subscribed ${room}${resumed ? ' (resumed)' : ''}`);
    } else if (msg.type === 'error') {
      const room = pending.get(msg.correlation_id);
      this.log('error', `error ${msg.data.code}: ${msg.data.message}`);
      if (room !== undefined) { // FORBIDDEN, INVALID_CHANNEL...: retrying will not help
        pending.delete(msg.correlation_id);
        this.rooms.delete(room);
      }
    }
  }

  resync(room, reason) {
    this.log('warn', `RESYNC ${room}: ${reason}`);
    for (const hook of this.resyncHooks) {
      try {
        hook(room, reason);
      } catch (err) {
        this.log('error', `resync hook failed: ${err}`);
      }
    }
  }
}
