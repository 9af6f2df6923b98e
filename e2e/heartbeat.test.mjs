// The Engine.IO heartbeat, end to end: the server pings every ping interval,
// a client that answers stays connected (WebSocket from the start, where the
// connection's reader keeps the heartbeat, and long-polling, where a task of
// the session does), and one that stops answering is closed once the ping
// timeout has passed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startPortico, tempFile, call, clients, eventually, signal } from './fixture.mjs';

const INTERVAL = 200;
const TIMEOUT = 300;
let node;
const { open, closeAll } = clients();

before(async () => {
  const config = tempFile('portico.toml', `
[socketio]
ping_interval_ms = ${INTERVAL}
ping_timeout_ms = ${TIMEOUT}
`);
  node = await startPortico({ plugins: ['echo'], args: ['--config', config] });
});
after(async () => { closeAll(); await node.stop(); });

/** A raw Engine.IO v4 WebSocket: `pings` holds when each ping arrived; `closed` resolves on close. */
async function rawSocket({ answer }) {
  const ws = new WebSocket(`${node.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
  const pings = [];
  const closed = new Promise((ok) => ws.on('close', () => ok(Date.now())));
  const opened = new Promise((ok, fail) => {
    ws.on('error', fail);
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('0')) ok(JSON.parse(text.slice(1)));
      if (text === '2') {
        pings.push(Date.now());
        if (answer()) ws.send('3');
      }
    });
  });
  return { ws, pings, closed, handshake: await opened };
}

test('a WebSocket client that answers every ping stays connected, pinged once per interval', async () => {
  const s = await rawSocket({ answer: () => true });
  assert.equal(s.handshake.pingInterval, INTERVAL);
  assert.equal(s.handshake.pingTimeout, TIMEOUT);
  await eventually('five pings', () => s.pings.length >= 5);
  assert.equal(s.ws.readyState, WebSocket.OPEN);
  // Paced by the interval, never faster (a slow machine may be later).
  const spread = s.pings[4] - s.pings[0];
  assert.ok(spread >= 4 * INTERVAL * 0.9, `5 pings over ${spread} ms`);
  s.ws.close();
});

test('a WebSocket client that stops answering pings is closed after the ping timeout', async () => {
  let answering = true;
  const s = await rawSocket({ answer: () => answering });
  await eventually('two pings', () => s.pings.length >= 2);
  answering = false;
  const unanswered = s.pings.length;
  await eventually('one unanswered ping', () => s.pings.length > unanswered);
  const close = signal('the close after the unanswered ping');
  s.closed.then(close.resolve);
  const closedAt = await close.promise;
  const lastPing = s.pings[s.pings.length - 1];
  assert.equal(s.pings.length, unanswered + 1, 'no ping after the unanswered one');
  assert.ok(closedAt - lastPing >= TIMEOUT * 0.9, `closed ${closedAt - lastPing} ms after the ping`);
});

for (const transports of [['websocket'], ['polling']]) {
  test(`the official client over ${transports[0]} keeps its connection across pings`, async () => {
    const s = await open(node.url, '/echo', { transports, upgrade: false });
    let pings = 0;
    s.io.engine.on('ping', () => { pings += 1; });
    await eventually('three pings', () => pings >= 3);
    assert.equal(s.connected, true);
    assert.equal(await call(s, 'alive', 7), 7);
    s.close();
  });
}
