// SIGTERM during traffic: the node stops in bounded time, Socket.IO clients
// see `transport close` and try to reconnect, SSE streams end cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { io } from 'socket.io-client';
import { startPortico, token, call, signal } from './fixture.mjs';

const GRACE_SECS = 3;

function exited(proc) {
  return new Promise((ok) => proc.once('exit', (code, signal) => ok({ code, signal })));
}

/** GET /healthz on a connection of its own that is closed after the answer; resolves with the status. */
function healthz(url) {
  return new Promise((ok, fail) => {
    http.get(`${url}/healthz`, { agent: false }, (res) => { res.resume(); res.on('end', () => ok(res.statusCode)); }).on('error', fail);
  });
}

/** A client that reconnects, like a browser's: resolves once connected. */
function client(url, transports) {
  const socket = io(`${url}/chat`, {
    auth: { token: token() }, forceNew: true, transports, reconnectionDelay: 50, reconnectionDelayMax: 100,
  });
  return new Promise((ok, fail) => {
    socket.once('connect', () => ok(socket));
    socket.once('connect_error', fail);
  });
}

test('SIGTERM during traffic: clean close, reconnect attempts, SSE ends, exit within the grace period', async () => {
  const node = await startPortico({
    plugins: ['chat'],
    env: { PORTICO_SHUTDOWN__GRACE_SECS: String(GRACE_SECS), PORTICO_THROTTLE__EVENTS_PER_SEC: '0' },
  });
  const sockets = [
    ...(await Promise.all([1, 2, 3].map(() => client(node.url, ['websocket'])))),
    ...(await Promise.all([1, 2].map(() => client(node.url, ['polling'])))),
  ];
  const outcomes = sockets.map((s) => new Promise((ok) => {
    s.once('disconnect', (reason) => {
      // The Manager reconnects on its own after `transport close`; the
      // attempt fails (the node is gone) and is reported here.
      s.io.once('reconnect_attempt', () => ok({ reason, retried: true }));
    });
  }));
  for (const s of sockets) assert.equal((await call(s, 'join', { room: 'lobby' })).ok, true);

  const sse = await fetch(`${node.url}/sse/chat?channel=lobby&access_token=${token()}`);
  assert.equal(sse.status, 200);
  const sseDone = (async () => {
    const reader = sse.body.getReader();
    for (;;) {
      const { done } = await reader.read();
      if (done) return 'ended';
    }
  })();

  // Traffic: every client sends messages until it is disconnected. SIGTERM goes
  // once every client has had acks back: the traffic flows, and is still flowing.
  let sent = 0;
  const acked = new Map(sockets.map((s) => [s, 0]));
  const flowing = signal('acked traffic from every client');
  const traffic = setInterval(() => {
    for (const s of sockets) {
      if (s.connected) {
        s.emit('message', { room: 'lobby', text: `m${sent++}` }, () => {
          acked.set(s, acked.get(s) + 1);
          if ([...acked.values()].every((n) => n >= 5)) flowing.resolve();
        });
      }
    }
  }, 5);
  await flowing.promise;

  const exit = exited(node.proc);
  const started = Date.now();
  node.proc.kill('SIGTERM');
  const results = await Promise.all(outcomes);
  clearInterval(traffic);
  const { code } = await exit;
  const took = Date.now() - started;
  for (const s of sockets) s.close();

  assert.equal(code, 0, node.logs());
  assert.ok(took < GRACE_SECS * 1000, `exited after ${took} ms`);
  assert.ok(sent > 0);
  // WebSocket clients get a close frame: `transport close`. A polling client
  // may instead see a request of its own fail as the node goes away
  // (`transport error`). Both reconnect; `io server disconnect` would not.
  for (const r of results.slice(0, 3)) assert.deepEqual(r, { reason: 'transport close', retried: true });
  for (const r of results.slice(3)) {
    assert.ok(['transport close', 'transport error'].includes(r.reason), r.reason);
    assert.equal(r.retried, true);
  }
  assert.equal(await sseDone, 'ended');
  assert.match(node.logs(), /shut down cleanly/);
});

test('a connection that never finishes its request cannot hold the node past the grace period', async () => {
  const grace = 1;
  const node = await startPortico({ plugins: ['chat'], env: { PORTICO_SHUTDOWN__GRACE_SECS: String(grace) } });
  const { port } = new URL(node.url);
  const raw = tcpConnect(Number(port), '127.0.0.1');
  await new Promise((ok) => raw.once('connect', ok));
  raw.on('error', () => {});
  // Half a request: the server waits for the rest.
  raw.write('GET /sse/chat?channel=lobby HTTP/1.1\r\nHost: x\r\n');
  // Connections are accepted in order: once a later one is answered, the half request's
  // was accepted (and is being read) before SIGTERM.
  assert.equal(await healthz(node.url), 200);

  const exit = exited(node.proc);
  const started = Date.now();
  node.proc.kill('SIGTERM');
  const { code } = await exit;
  const took = Date.now() - started;
  raw.destroy();
  assert.equal(code, 0);
  assert.ok(took < grace * 1000 + 1500, `exited after ${took} ms`);
  assert.ok(took >= grace * 1000 - 50, `exited after only ${took} ms: the half request did not hold it`);
  assert.match(node.logs(), /shutdown grace period over/);
});
