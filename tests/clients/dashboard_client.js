#!/usr/bin/env node
// Loads the engine's dashboard (GET /) in headless Chromium, for test_dashboard.py.
//
//   node dashboard_client.js URL SCREENSHOT.png
//
// Driven over the DevTools protocol as in chromium_client.js. Prints "READY" once the page is
// live (its WebSocket is open and it has had stats events), then samples the page's state
// (window.ringcastDashboard) every 250 ms; when a line "DONE" arrives on stdin it samples 2.5 s
// more, saves a screenshot and prints one JSON line: {samples, final, dom, screenshot}.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const WebSocket = require('ws');

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: node dashboard_client.js URL SCREENSHOT.png');
  process.exit(2);
}
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ringcast-dash-'));
let browser = null;
let stderrTail = '';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cleanup() {
  if (browser && browser.exitCode === null && browser.signalCode === null) {
    try { process.kill(-browser.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
  }
  fs.rmSync(profile, { recursive: true, force: true });
}
function finish(obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n');
  cleanup();
  process.exit(code);
}

async function devtoolsEndpoint() {
  const file = path.join(profile, 'DevToolsActivePort');
  for (let i = 0; i < 300; i++) {
    if (browser.exitCode !== null) throw new Error('chromium exited early: ' + stderrTail);
    try {
      const [port, wsPath] = fs.readFileSync(file, 'utf8').split('\n');
      if (port && wsPath) return `ws://127.0.0.1:${port.trim()}${wsPath.trim()}`;
    } catch (e) { /* not written yet */ }
    await sleep(100);
  }
  throw new Error('chromium did not open its DevTools port: ' + stderrTail);
}

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
  let done = false;
  readline.createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() === 'DONE') done = true;
  });
  browser = spawn(browserPath, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-extensions',
    '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--remote-debugging-port=0',
    '--window-size=1280,900', 'about:blank',
  ], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  browser.stderr.on('data', (d) => { stderrTail = (stderrTail + d.toString()).slice(-2000); });
  const ws = new WebSocket(await devtoolsEndpoint(), { perMessageDeflate: false });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const send = cdpClient(ws);
  const { targetId } = await send('Target.createTarget', { url });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  await send('Emulation.setDeviceMetricsOverride',
    { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
  const evaluate = async (expression) => {
    const r = await send('Runtime.evaluate', { expression, returnByValue: true }, sessionId);
    return r.exceptionDetails ? undefined : r.result.value;
  };
  const sample = () => evaluate(
    'window.ringcastDashboard && JSON.parse(JSON.stringify(window.ringcastDashboard))');

  const samples = [];
  let ready = false;
  const deadline = Date.now() + 120000;
  let until = Infinity;
  while (Date.now() < Math.min(deadline, until)) {
    const s = await sample();
    if (s) {
      s.t = Date.now();
      samples.push(s);
      if (!ready && s.connected && s.events >= 2) {
        ready = true;
        process.stdout.write('READY\n');
      }
    }
    if (done && until === Infinity) until = Date.now() + 2500;
    await sleep(250);
  }
  if (!ready) throw new Error('the dashboard never went live: ' + JSON.stringify(samples.pop()));
  const dom = await evaluate(`(() => {
    const t = (id) => document.getElementById(id).textContent;
    return { connections: t('connections'), rooms: t('rooms'), deliveries: t('deliveries-rate'),
             publish: t('publish-rate'), slow: t('slow-closes'), status: t('status'),
             topRows: [...document.querySelectorAll('#top-rooms tr')].map((tr) =>
               [...tr.children].map((td) => td.textContent)),
             chartPoints: document.querySelector('#chart-deliveries polyline')
               .getAttribute('points').split(' ').length,
             scripts: [...document.scripts].map((s) => s.src).filter(Boolean),
             links: [...document.querySelectorAll('link[href]')].length,
             href: location.href };
  })()`);
  const png = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
  fs.writeFileSync(shot, Buffer.from(png.data, 'base64'));
  const final = samples[samples.length - 1];
  try { await Promise.race([send('Browser.close'), sleep(3000)]); } catch (e) { /* closing */ }
  ws.terminate();
  return { samples, final, dom, screenshot: shot };
}

const watchdog = setTimeout(() => finish({ error: 'timeout after 150 s' }, 1), 150000);
main().then(
  (out) => { clearTimeout(watchdog); finish(out, 0); },
  (err) => { clearTimeout(watchdog); finish({ error: err.message }, 1); },
);
