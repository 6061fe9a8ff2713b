#!/usr/bin/env node
// Runs browser_session.js in headless Chromium against ringcast, for test_chromium_client.py.
//
//   node chromium_client.js URL ROOM
//
// Chromium is driven over the DevTools protocol (cdp.js): we attach to a new page and evaluate
// the session function there, so the WebSocket under test is the browser's own. Prints the
// session's JSON result on stdout (exit 0), or {"error": ...} (exit 1).
'use strict';

const fs = require('fs');
const path = require('path');
const { launchChromium, closeBrowser } = require('./cdp');

const [url, room] = process.argv.slice(2);
if (!url || !room) {
  console.error('usage: node chromium_client.js URL ROOM');
  process.exit(2);
}

const sessionSrc = fs.readFileSync(path.join(__dirname, 'browser_session.js'), 'utf8');
// CHROMIUM_ARGS: extra browser flags, space-separated (the wss:// test passes the test
// certificate's --ignore-certificate-errors-spki-list).
const chromium = launchChromium('ringcast-chromium-',
  (process.env.CHROMIUM_ARGS || '').split(' ').filter(Boolean));

async function main() {
  const { ws, send } = await chromium.connect();

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
  await closeBrowser(ws, send);
  return out;
}

const watchdog = setTimeout(() => chromium.finish({ error: 'timeout after 60 s' }, 1), 60000);
main().then(
  (out) => { clearTimeout(watchdog); chromium.finish(out, out.error ? 1 : 0); },
  (err) => { clearTimeout(watchdog); chromium.finish({ error: err.message }, 1); },
);
