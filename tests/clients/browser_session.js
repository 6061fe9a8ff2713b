// The session a browser page runs with its own WebSocket (the browser's, not a library's).
// chromium_client.js evaluates this function's source inside a headless Chromium page; it must
// stay self-contained (no require, no outer variables).
//
// Connects, subscribes to `room`, publishes one event there, waits for the publish response and
// its own event, then closes with 1000. Resolves with every message received, in order, and the
// close event's code; rejects after 10 s.
async function ringcastBrowserSession(url, room) {
  const payload = { from: 'chromium', agent: navigator.userAgent, text: 'caf\u00e9 \u{1F600}' };
  const out = { client: 'chromium', messages: [], sentPayload: payload };
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout: ' + JSON.stringify(out))), 10000);
    const ws = new WebSocket(url);
    let gotResponse = false;
    let gotEvent = false;
    ws.onerror = () => { out.error = 'websocket error'; };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') { out.error = 'binary message'; return; }
      const msg = JSON.parse(ev.data);
      out.messages.push(msg);
      if (msg.type === 'event' && msg.event === 'session.created') {
        ws.send(JSON.stringify({ type: 'subscribe', channel: room }));
      } else if (msg.type === 'response' && msg.event === 'subscribe') {
        ws.send(JSON.stringify({
          type: 'request', event: 'publish', correlation_id: 'browser-pub',
          data: { channel: room, event: 'browser.hello', payload },
        }));
      } else if (msg.type === 'response' && msg.correlation_id === 'browser-pub') {
        gotResponse = true;
      } else if (msg.type === 'event' && msg.room === room) {
        gotEvent = true;
      }
      if (gotResponse && gotEvent && ws.readyState === WebSocket.OPEN) ws.close(1000, 'done');
    };
    ws.onclose = (ev) => {
      clearTimeout(timer);
      out.closeCode = ev.code;
      out.wasClean = ev.wasClean;
      resolve(out);
    };
  });
}
