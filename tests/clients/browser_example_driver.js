#!/usr/bin/env node
// Runs docs/examples/browser-client.js in headless Chromium, for test_examples.py.
//
//   node browser_example_driver.js WS_URL [--token JWT] [--backoff-base S] [--backoff-cap S] ROOM...
//
// Serves a page that imports the module as is (an ES module needs an http: origin) from a
// local HTTP server, opens it in Chromium (cdp.js) and relays the page's console: console.log
// lines (the events, one JSON line each) to stdout, the module's info/warn/error lines to stderr.
// So the browser example looks to the test like the Python and C ones: SIGINT makes the page
// call sub.close() (close code 1000), then the browser goes and the driver exits 0.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { launchChromium, closeBrowser } = require('./cdp');

const args = process.argv.slice(2);
const url = args.shift();
const opts = { backoffBase: 500, backoffCap: 30000 };
const rooms = [];
while (args.length) {
  const a = args.shift();
  if (a === '--token') opts.token = args.shift();
  else if (a === '--backoff-base') opts.backoffBase = parseFloat(args.shift()) * 1000;
  else if (a === '--backoff-cap') opts.backoffCap = parseFloat(args.shift()) * 1000;
  else rooms.push(a);
}
if (!url || rooms.length === 0) {
  console.error('usage: node browser_example_driver.js WS_URL [--token JWT] [--backoff-base S] ' +
                '[--backoff-cap S] ROOM [ROOM...]');
  process.exit(2);
}

const moduleSrc = fs.readFileSync(
  path.join(__dirname, '..', '..', 'docs', 'examples', 'browser-client.js'), 'utf8');
const page = `<!doctype html><meta charset="utf-8"><title>ringcast example</title>
<script type="module">
import { RingcastSubscriber } from '/browser-client.js';
const sub = new RingcastSubscriber(${JSON.stringify(url)}, ${JSON.stringify(rooms)},
                                   ${JSON.stringify(opts)});
sub.on('*', (ev) => console.log(JSON.stringify(ev)));
sub.onResync((room) => { /* a real page refetches the room's state here */ });
window.ringcastSub = sub;
sub.start();
</script>`;

const server = http.createServer((req, res) => {
  const js = req.url === '/browser-client.js';
  res.writeHead(200, { 'Content-Type': js ? 'text/javascript' : 'text/html; charset=utf-8' });
  res.end(js ? moduleSrc : page);
});

const chromium = launchChromium('ringcast-example-');
let stopping = null;

async function main() {
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { ws, send } = await chromium.connect();
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString('utf8'));
    if (msg.method === 'Runtime.consoleAPICalled' && msg.sessionId === sessionId) {
      const text = msg.params.args.map((a) => (a.value !== undefined ? a.value : a.description))
        .join(' ');
      (msg.params.type === 'log' ? process.stdout : process.stderr).write(text + '\n');
    } else if (msg.method === 'Runtime.exceptionThrown' && msg.sessionId === sessionId) {
      process.stderr.write('page exception: ' +
        JSON.stringify(msg.params.exceptionDetails).slice(0, 500) + '\n');
    }
  });
  await send('Runtime.enable', {}, sessionId);
  await send('Page.navigate', { url: `http://127.0.0.1:${server.address().port}/` }, sessionId);

  await new Promise((resolve) => {
    stopping = resolve;
  });
  const res = await send('Runtime.evaluate', {
    expression: 'window.ringcastSub.close().then(() => "closed")',
    awaitPromise: true,
    returnByValue: true,
  }, sessionId);
  await closeBrowser(ws, send);
  server.close();
  return res.result && res.result.value === 'closed' ? 0 : 1;
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => (stopping ? stopping() : process.exit(1))); // exit kills the browser
}
main().then(
  (code) => { chromium.cleanup(); process.exit(code); },
  (err) => { process.stderr.write('driver: ' + err.message + '\n'); chromium.cleanup(); process.exit(1); },
);
