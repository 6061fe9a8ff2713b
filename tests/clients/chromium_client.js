#!/usr/bin/env node
// Runs browser_session.js in headless Chromium against ringcast, for test_chromium_client.py.
//
//   node chromium_client.js URL ROOM
//
// Chromium is driven over the DevTools protocol with the `ws` package we already depend on: a
// browser started with --remote-debugging-port=0 writes its port to DevToolsActivePort in the
// profile directory; we attach to a new page and evaluate the session function there, so the
// WebSocket under test is the browser's own. Prints the session's JSON result on stdout (exit
// 0), or {"error": ...} (exit 1). CHROMIUM overrides the browser path (default
// /usr/bin/chromium).
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');

const [url, room] = process.argv.slice(2);
if (!url || !room) {
  console.error('usage: node chromium_client.js URL ROOM');
  process.exit(2);
}

const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ringcast-chromium-'));
const sessionSrc = fs.readFileSync(path.join(__dirname, 'browser_session.js'), 'utf8');
let browser = null;
let stderrTail = '';

function cleanup() {
  if (browser && browser.exitCode === null && browser.signalCode === null) {
    // Its own process group (detached below): the renderer and helpers go with it.
    try { process.kill(-browser.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
  }
  fs.rmSync(profile, { recursive: true, force: true });
}

function finish(obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n');
  cleanup();
  process.exit(code);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function devtoolsEndpoint() {
  const file = path.join(profile, 'DevToolsActivePort');
  for (let i = 0; i < 300; i++) { // 30 s: a cold start on a loaded 2-core machine is slow
    if (browser.exitCode !== null) throw new Error('chromium exited early: ' + stderrTail);
    try {
      const [port, wsPath] = fs.readFileSync(file, 'utf8').split('\n');
      if (port && wsPath) return `ws://127.0.0.1:${port.trim()}${wsPath.trim()}`;
    } catch (e) { /* not written yet */ }
    await sleep(100);
  }
  throw new Error('chromium did not open its DevTools port: ' + stderrTail);
}

// A minimal DevTools client: numbered commands, flat sessions.
function cdpClient(ws) {
  let next = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString('utf8'));
    const p = msg.id !== undefined && pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(JSON.stringify(msg.error)));
    else p.resolve(msg.result);
  });
  return (method, params = {}, sessionId = undefined) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params, sessionId }));
  });
}

async function main() {
  browser = spawn(browserPath, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-extensions',
    '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--remote-debugging-port=0',
    'about:blank',
  ], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  browser.stderr.on('data', (d) => { stderrTail = (stderrTail + d.toString()).slice(-2000); });

  const endpoint = await devtoolsEndpoint();
  const ws = new WebSocket(endpoint, { perMessageDeflate: false });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const send = cdpClient(ws);

  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const version = await send('Browser.getVersion');
  const res = await send('Runtime.evaluate', {
    expression: `(() => {\n${sessionSrc}\nreturn ringcastBrowserSession(` +
      `${JSON.stringify(url)}, ${JSON.stringify(room)});\n})()`,
    awaitPromise: true,
    returnByValue: true,
  }, sessionId);
  if (res.exceptionDetails) {
    const d = res.exceptionDetails;
    throw new Error((d.exception && d.exception.description) || d.text);
  }
  const out = res.result.value;
  out.browser = version.product;
  try { await Promise.race([send('Browser.close'), sleep(3000)]); } catch (e) { /* closing */ }
  ws.terminate();
  return out;
}

const watchdog = setTimeout(() => finish({ error: 'timeout after 60 s' }, 1), 60000);
main().then(
  (out) => { clearTimeout(watchdog); finish(out, out.error ? 1 : 0); },
  (err) => { clearTimeout(watchdog); finish({ error: err.message }, 1); },
);
