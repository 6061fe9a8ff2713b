#!/usr/bin/env node
// Loads the engine's dashboard (GET /) in headless Chromium, for test_dashboard.py.
//
//   node dashboard_client.js URL SCREENSHOT.png
//
// Driven over the DevTools protocol (cdp.js). Prints "READY" once the page is
// live (its WebSocket is open and it has had stats events), then samples the page's state
// (window.ringcastDashboard) every 250 ms; when a line "DONE" arrives on stdin it samples 2.5 s
// more, saves a screenshot and prints one JSON line: {samples, final, dom, screenshot}.
'use strict';

const fs = require('fs');
const readline = require('readline');
const { launchChromium, closeBrowser, sleep } = require('./cdp');

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: node dashboard_client.js URL SCREENSHOT.png');
  process.exit(2);
}
const chromium = launchChromium('ringcast-dash-', ['--window-size=1280,900']);

async function main() {
  let done = false;
  readline.createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() === 'DONE') done = true;
  });
  const { ws, send } = await chromium.connect();
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
             latP99: t('lat-p99'), latSub: t('lat-sub'),
             latChartPoints: document.querySelector('#chart-lat polyline')
               .getAttribute('points').split(' ').length,
             topRateRows: [...document.querySelectorAll('#top-rate tr')].map((tr) =>
               [...tr.children].map((td) => td.textContent)),
             scripts: [...document.scripts].map((s) => s.src).filter(Boolean),
             links: [...document.querySelectorAll('link[href]')].length,
             href: location.href };
  })()`);
  const png = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
  fs.writeFileSync(shot, Buffer.from(png.data, 'base64'));
  const final = samples[samples.length - 1];
  await closeBrowser(ws, send);
  return { samples, final, dom, screenshot: shot };
}

const watchdog = setTimeout(() => chromium.finish({ error: 'timeout after 150 s' }, 1), 150000);
main().then(
  (out) => { clearTimeout(watchdog); chromium.finish(out, 0); },
  (err) => { clearTimeout(watchdog); chromium.finish({ error: err.message }, 1); },
);
