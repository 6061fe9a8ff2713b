#!/usr/bin/env node
// A real Node.js `ws` client session against ringcast, for tests/clients/test_node_client.py.
//
//   node node_client.js URL ROOM
//
// Connects, reads the welcome, subscribes to ROOM, publishes one event to it, waits for both the
// publish response and its own event, sends a WebSocket ping and waits for the pong, then closes
// with 1000. Prints one JSON object on stdout: every message it received, in order, plus the
// pong payload and the close code the server echoed. Exits 1 (with {"error": ...}) on any
// failure or after 10 s.
'use strict';

const WebSocket = require('ws');

const [url, room] = process.argv.slice(2);
if (!url || !room) {
  console.error('usage: node node_client.js URL ROOM');
  process.exit(2);
}

const PAYLOAD = { from: 'node', n: 1, text: 'h\u00e9llo \u2713', nested: { list: [1, 2, null] } };
const result = { client: 'node-ws', wsVersion: require('ws/package.json').version, messages: [] };

function fail(why) {
  result.error = String(why);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(1);
}

const timer = setTimeout(() => fail('timeout after 10 s'), 10000);
const ws = new WebSocket(url, { perMessageDeflate: false });
let gotResponse = false;
let gotEvent = false;
let pinged = false;

function maybePing() {
  // Both halves of the publish are in: exercise control frames next.
  if (gotResponse && gotEvent && !pinged) {
    pinged = true;
    ws.ping(Buffer.from('node-ping'));
  }
}

ws.on('error', (err) => fail(err.message));

ws.on('message', (data, isBinary) => {
  if (isBinary) return fail('server sent a binary frame');
  const msg = JSON.parse(data.toString('utf8'));
  result.messages.push(msg);
  if (msg.type === 'event' && msg.event === 'session.created') {
    ws.send(JSON.stringify({
      type: 'request', event: 'subscribe', data: { channel: room }, id: 'node-sub',
    }));
  } else if (msg.type === 'response' && msg.correlation_id === 'node-sub') {
    ws.send(JSON.stringify({
      type: 'request', event: 'publish', id: 42,
      data: { channel: room, event: 'node.hello', payload: PAYLOAD },
    }));
  } else if (msg.type === 'response' && msg.correlation_id === 42) {
    gotResponse = true;
    maybePing();
  } else if (msg.type === 'event' && msg.room === room) {
    gotEvent = true;
    maybePing();
  }
});

ws.on('pong', (data) => {
  result.pong = data.toString('utf8');
  ws.close(1000, 'node done');
});

ws.on('close', (code) => {
  clearTimeout(timer);
  result.closeCode = code;
  result.sentPayload = PAYLOAD;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.pong !== undefined ? 0 : 1);
});
