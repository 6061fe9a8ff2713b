'use strict';
/*
 * node-ws: a broadcast server on Node.js `ws`, written the way ws's own users write one, speaking
 * the subset of ringcast's protocol (docs/protocol.md) that ringcast-load uses. It is a peer in
 * bench/run's side-by-side benchmark, so it follows the idioms of the ws README rather than
 * tricks: one process, JSON.stringify once per publish, client.send(str) per subscriber, the
 * README's ping/terminate heartbeat.
 *
 *   node server.js [--host 127.0.0.1] [--port 8765]
 *
 * Prints "listening on HOST:PORT" on stderr once the socket accepts.
 */
const { WebSocketServer, WebSocket } = require('ws');
const crypto = require('crypto');

// The same limits ringcast ships with, so that both refuse the same things.
const MAX_MESSAGE_BYTES = 65536;
const MAX_CHANNEL_BYTES = 255;
const MAX_QUEUE_BYTES = 1 << 20; // a subscriber with more unsent is closed (4008), as ringcast does
const HEARTBEAT_MS = 25000;
// ringcast listens with a deep backlog; Node's default (511) would turn a 10k-connection ramp
// into SYN retransmits and measure the kernel rather than the server.
const BACKLOG = 4096;

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 8765 };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node server.js [--host ADDR] [--port N]\n');
      process.exit(0);
    } else if (a === '--host' || a === '--bind') {
      opts.host = argv[++i];
    } else if (a === '--port') {
      opts.port = Number(argv[++i]);
    } else {
      process.stderr.write(`unknown option ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    process.stderr.write('bad --port\n');
    process.exit(2);
  }
  return opts;
}

// Node cannot raise RLIMIT_NOFILE itself: bench/run raises the soft limit before exec (by hand:
// `ulimit -n 20000`). Warn rather than fail mysteriously at connection 1021.
function checkNofile() {
  try {
    const m = /Max open files\s+(\d+)/.exec(require('fs').readFileSync('/proc/self/limits', 'utf8'));
    if (m && Number(m[1]) < 10100) {
      process.stderr.write(`node-ws: warning: open-file limit ${m[1]} is below 10,000 connections\n`);
    }
  } catch (e) {
    // not Linux: nothing to check
  }
}

const opts = parseArgs(process.argv);
checkNofile();
const rooms = new Map(); // channel -> Set of sockets
const roomSeq = new Map(); // channel -> last seq published

const now = () => new Date().toISOString();

function send(ws, obj) {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function sendError(ws, code, message, id) {
  const msg = { type: 'error', event: 'error', data: { code, message } };
  if (id !== undefined) msg.correlation_id = id;
  msg.timestamp = now();
  send(ws, msg);
}

function respond(ws, event, data, id) {
  const msg = { type: 'response', event, data };
  if (id !== undefined) msg.correlation_id = id;
  msg.timestamp = now();
  send(ws, msg);
}

// Returns an error message for a bad channel name, or null when it is fine.
function channelError(ch) {
  if (typeof ch !== 'string') return 'channel must be a string';
  if (ch.length === 0) return 'channel is empty';
  if (Buffer.byteLength(ch, 'utf8') > MAX_CHANNEL_BYTES) return 'channel is longer than 255 bytes';
  if (/[\u0000-\u001f\u007f]/.test(ch)) return 'channel holds a control character';
  return null;
}

function subscribe(ws, ch) {
  let set = rooms.get(ch);
  if (!set) {
    set = new Set();
    rooms.set(ch, set);
  }
  set.add(ws);
  ws.subs.add(ch);
}

function unsubscribe(ws, ch) {
  const set = rooms.get(ch);
  if (set) {
    set.delete(ws);
    // Keep the seq counter: seq must keep increasing for the room even if it empties.
    if (set.size === 0) rooms.delete(ch);
  }
  ws.subs.delete(ch);
}

function publish(ws, data, id) {
  const ch = data.channel;
  const err = channelError(ch);
  if (err) return sendError(ws, 'INVALID_CHANNEL', err, id);
  const event = typeof data.event === 'string' ? data.event : 'message';
  const seq = (roomSeq.get(ch) || 0) + 1;
  roomSeq.set(ch, seq);
  const set = rooms.get(ch);
  let count = 0;
  if (set) {
    // Serialized once; ws frames it per socket.
    const str = JSON.stringify({
      type: 'event',
      event,
      room: ch,
      data: data.payload === undefined ? null : data.payload,
      timestamp: now(),
      seq,
    });
    for (const client of set) {
      if (client.readyState !== WebSocket.OPEN) continue;
      if (client.bufferedAmount > MAX_QUEUE_BYTES) {
        client.close(4008, 'slow consumer');
        continue;
      }
      client.send(str);
      count++;
    }
  }
  respond(ws, 'publish', { status: 'published', channel: ch, seq, subscribers: count }, id);
}

function onMessage(ws, raw, isBinary) {
  if (isBinary) {
    ws.close(1003, 'binary messages are not supported');
    return;
  }
  let msg;
  try {
    msg = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    return sendError(ws, 'INVALID_MESSAGE', 'not JSON');
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return sendError(ws, 'INVALID_MESSAGE', 'not a JSON object');
  }
  switch (msg.type) {
    case 'ping':
      return send(ws, { type: 'pong' });
    case 'subscribe':
    case 'unsubscribe': {
      const err = channelError(msg.channel);
      if (err) return sendError(ws, 'INVALID_CHANNEL', err);
      if (msg.type === 'subscribe') subscribe(ws, msg.channel);
      else unsubscribe(ws, msg.channel);
      return respond(ws, msg.type, { status: msg.type + 'd', channel: msg.channel });
    }
    case 'request':
      break;
    default:
      return sendError(ws, 'INVALID_MESSAGE', 'unknown type');
  }
  const id = msg.id !== undefined ? msg.id : msg.correlation_id;
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
    return sendError(ws, 'INVALID_MESSAGE', 'id must be a string or a number');
  }
  if (typeof msg.event !== 'string') return sendError(ws, 'INVALID_MESSAGE', 'no event', id);
  const data = msg.data === undefined ? {} : msg.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return sendError(ws, 'INVALID_MESSAGE', 'data must be an object', id);
  }
  switch (msg.event) {
    case 'ping':
      return respond(ws, 'pong', {}, id);
    case 'subscribe':
    case 'unsubscribe': {
      const err = channelError(data.channel);
      if (err) return sendError(ws, 'INVALID_CHANNEL', err, id);
      if (msg.event === 'subscribe') subscribe(ws, data.channel);
      else unsubscribe(ws, data.channel);
      return respond(ws, msg.event, { status: msg.event + 'd', channel: data.channel }, id);
    }
    case 'publish':
      return publish(ws, data, id);
    default:
      return sendError(ws, 'UNKNOWN_REQUEST', `unknown request ${msg.event}`, id);
  }
}

const wss = new WebSocketServer({
  host: opts.host,
  port: opts.port,
  backlog: BACKLOG,
  maxPayload: MAX_MESSAGE_BYTES, // ws closes with 1009 above it
  perMessageDeflate: false, // ws's default; stated because the comparison depends on it
});

wss.on('connection', (ws) => {
  ws.subs = new Set();
  ws.isAlive = true;
  ws.on('pong', () => {
    ws.isAlive = true;
  });
  ws.on('message', (raw, isBinary) => onMessage(ws, raw, isBinary));
  ws.on('close', () => {
    for (const ch of ws.subs) unsubscribe(ws, ch);
  });
  ws.on('error', () => {}); // a reset peer must not take the process down
  send(ws, {
    type: 'event',
    event: 'session.created',
    data: {
      connection_id: crypto.randomUUID(),
      server: 'node-ws',
      heartbeat_s: HEARTBEAT_MS / 1000,
      max_message_bytes: MAX_MESSAGE_BYTES,
    },
    timestamp: now(),
  });
});

// The ws README's heartbeat: terminate whoever did not answer the previous ping.
const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, HEARTBEAT_MS);

wss.on('listening', () => {
  const a = wss.address();
  process.stderr.write(`node-ws (ws ${require('ws/package.json').version}) listening on ${a.address}:${a.port}\n`);
});

wss.on('error', (e) => {
  process.stderr.write(`node-ws: ${e.message}\n`);
  process.exit(1);
});

function shutdown(signal) {
  // Said on stderr so that a server stopped by someone else's signal is told from a crash.
  process.stderr.write(`node-ws: ${signal}, closing ${wss.clients.size} connections\n`);
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.close(1001, 'server shutdown');
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
