// Headless Chromium driven over the DevTools protocol, for the browser tests
// (chromium_client.js, dashboard_client.js). Uses the `ws` package we already depend on: a
// browser started with --remote-debugging-port=0 writes its port to DevToolsActivePort in its
// profile directory, and we attach to it there. CHROMIUM overrides the browser path (default
// /usr/bin/chromium).
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

// A browser with a fresh profile (prefix names its temp directory) and extra flags.
// connect() resolves to { ws, send } once its DevTools socket is open; cleanup() kills it and
// removes the profile; finish(obj, code) prints obj as one JSON line, cleans up and exits.
function launchChromium(prefix, extraArgs = []) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  let stderrTail = '';
  const browser = spawn(process.env.CHROMIUM || '/usr/bin/chromium', [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-extensions',
    '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--remote-debugging-port=0',
    ...extraArgs, 'about:blank',
  ], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  browser.stderr.on('data', (d) => { stderrTail = (stderrTail + d.toString()).slice(-2000); });
  // Whatever way the driver exits (a signal before it is ready, an exception), the browser, in
  // its own process group, goes with it: nothing outlives the test.
  process.on('exit', () => cleanup());

  async function endpoint() {
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

  async function connect() {
    const ws = new WebSocket(await endpoint(), { perMessageDeflate: false });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    return { ws, send: cdpClient(ws) };
  }

  function cleanup() {
    if (browser.exitCode === null && browser.signalCode === null) {
      // Its own process group (detached above): the renderer and helpers go with it.
      try { process.kill(-browser.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
    }
    fs.rmSync(profile, { recursive: true, force: true });
  }

  function finish(obj, code) {
    process.stdout.write(JSON.stringify(obj) + '\n');
    cleanup();
    process.exit(code);
  }

  return { connect, cleanup, finish };
}

// Closes the browser politely (bounded), then drops the DevTools socket.
async function closeBrowser(ws, send) {
  try { await Promise.race([send('Browser.close'), sleep(3000)]); } catch (e) { /* closing */ }
  ws.terminate();
}

module.exports = { launchChromium, closeBrowser, sleep };
