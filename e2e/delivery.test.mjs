// Delivery guarantees. Connection state recovery with the official
// socket.io-client: a receiver whose connection is cut every 0.7 s gets every
// acked message exactly once, in order, with `socket.recovered` true after
// each reconnect, on one node and across nodes (including after its node was
// killed with SIGKILL); a node that stalls catches up and cuts nobody off;
// slow consumers are told and recover; a full outbox to
// Redis refuses visibly; a node started later resumes SSE from the stream.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startPortico, connect, call, token, tempFile, eventually } from './fixture.mjs';
import { proxy } from './proxy.mjs';
import { startRedis } from './redis.mjs';
import { openStream } from './sse-client.mjs';

const cleanup = [];
// The sender publishes faster than the default per-socket event limit.
const UNLIMITED = '[throttle]\nevents_per_sec = 0\n';
after(async () => { for (const f of cleanup.reverse()) await f(); });

/** A chat client through `url` that reconnects at once and records what it gets. */
async function receiver(url, room, sub) {
  const socket = io(`${url}/chat`, {
    auth: { token: token({ sub }) }, transports: ['websocket'], forceNew: true,
    reconnectionDelay: 20, reconnectionDelayMax: 40, randomizationFactor: 0,
  });
  cleanup.push(() => socket.close());
  const r = { socket, texts: [], offsets: [], connects: [], waiters: [] };
  socket.on('connect', () => r.connects.push({ id: socket.id, recovered: socket.recovered }));
  socket.on('message', (m, offset) => {
    r.texts.push(m.text);
    r.offsets.push(offset);
    r.waiters = r.waiters.filter((w) => !w());
  });
  await new Promise((ok, fail) => { socket.once('connect', ok); socket.once('connect_error', fail); });
  assert.equal((await call(socket, 'join', { room })).ok, true);
  return r;
}

/** Resolves once `check()` holds, checked after each message `r` receives. */
function until(r, check, ms, what) {
  if (check()) return Promise.resolve();
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${what} within ${ms} ms`)), ms);
    r.waiters.push(() => { if (!check()) return false; clearTimeout(timer); ok(); return true; });
  });
}

/**
 * Send `count` messages to `room` at a steady rate (`perTick` every 10 ms),
 * each acked; `onSent(i)` runs after message i is sent. Resolves with the
 * texts acked `ok`, in send order.
 */
async function send(sender, room, count, { perTick = 3, onSent = () => {} } = {}) {
  const acks = [];
  for (let i = 0; i < count; i++) {
    acks.push(call(sender, 'message', { room, text: String(i) }).then((a) => (a.ok ? String(i) : null), () => null));
    onSent(i);
    if (i % perTick === perTick - 1) await new Promise((r) => setTimeout(r, 10));
  }
  return (await Promise.all(acks)).filter((t) => t !== null);
}

function assertExactlyOnceInOrder(r, acked) {
  const seen = new Set();
  for (const t of r.texts) {
    assert.ok(!seen.has(t), `message ${t} was delivered twice`);
    seen.add(t);
  }
  const missing = acked.filter((t) => !seen.has(t));
  assert.deepEqual(missing, [], `${missing.length} acked messages never arrived`);
  const nums = r.texts.map(Number);
  assert.ok(nums.every((n, i) => i === 0 || n > nums[i - 1]), 'messages arrived out of order');
  // Every message carries its offset as the last argument, in increasing order.
  assert.ok(r.offsets.every((o) => /^\d+-\d+$/.test(o)), 'every message has an offset');
}

function assertRecoveredEachTime(r, minReconnects) {
  const [first, ...again] = r.connects;
  assert.ok(again.length >= minReconnects, `only ${again.length} reconnects`);
  for (const c of again) {
    assert.equal(c.recovered, true, `a reconnect was not recovered (${again.filter((x) => x.recovered).length}/${again.length})`);
    assert.equal(c.id, first.id, 'the socket id is kept');
  }
}

test('one node: a receiver cut every 0.7 s gets all 1000 acked messages once, in order, recovered each time', async () => {
  const config = tempFile('portico.toml', UNLIMITED);
  const node = await startPortico({ plugins: ['chat'], args: ['--config', config] });
  cleanup.push(() => node.stop());
  const cutter = await proxy(node.url);
  cleanup.push(() => cutter.close());
  const r = await receiver(cutter.url, 'flap', 'rita');
  const sender = await connect(node.url, '/chat', { auth: { token: token({ sub: 'sam' }) } });
  cleanup.push(() => sender.close());
  assert.equal((await call(sender, 'join', { room: 'flap' })).ok, true);

  const flaps = setInterval(() => { if (r.socket.connected) cutter.cut(); }, 700);
  let acked;
  try {
    // ~200/s: about 5 s, so 7 cuts.
    acked = await send(sender, 'flap', 1000, { perTick: 2 });
  } finally {
    clearInterval(flaps);
  }
  assert.equal(acked.length, 1000, 'every message was acked ok');
  await until(r, () => new Set(r.texts).size >= acked.length, 15000, 'not every acked message arrived').catch((e) => {
    const missing = acked.filter((t) => !r.texts.includes(t));
    throw new Error(`${e.message}: ${missing.length} missing (first ${missing.slice(0, 5)}), connects ${JSON.stringify(r.connects)}`);
  })
  assertExactlyOnceInOrder(r, acked);
  assertRecoveredEachTime(r, 4);
});

test('a client whose session expired reconnects with recovered false and a new id', async () => {
  const config = tempFile('portico.toml', '[socketio]\nrecovery_window_secs = 1\n');
  const node = await startPortico({ plugins: ['chat'], args: ['--config', config] });
  cleanup.push(() => node.stop());
  const cutter = await proxy(node.url);
  cleanup.push(() => cutter.close());
  const r = await receiver(cutter.url, 'late', 'lou');
  const sender = await connect(node.url, '/chat', { auth: { token: token({ sub: 'sid' }) } });
  cleanup.push(() => sender.close());
  await call(sender, 'join', { room: 'late' });
  await call(sender, 'message', { room: 'late', text: '1' });
  await until(r, () => r.texts.length === 1, 5000, 'the first message did not arrive');
  cutter.refusing = true;
  cutter.cut();
  // Away longer than the window: the session is gone.
  await new Promise((ok) => r.socket.once('disconnect', ok));
  // Time is the condition here: stay away past the 1 s window.
  await new Promise((ok) => setTimeout(ok, 1600));
  cutter.refusing = false;
  await new Promise((ok) => r.socket.once('connect', ok));
  assert.equal(r.connects.at(-1).recovered, false);
  assert.notEqual(r.connects.at(-1).id, r.connects[0].id);
});

test('two nodes: the receiver alternates nodes, then its node is SIGKILLed; nothing lost, nothing twice', async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  // A short heartbeat TTL, so a killed node counts as dead quickly.
  const env = { PORTICO_REDIS_URL: redis.url };
  const config = tempFile('portico.toml', `${UNLIMITED}[cluster]\nnode_ttl_ms = 1500\n`);
  const [a, b] = await Promise.all([0, 1].map(() => startPortico({ plugins: ['chat'], env, args: ['--config', config] })));
  cleanup.push(() => a.stop(), () => b.stop());
  const cutter = await proxy(a.url);
  cleanup.push(() => cutter.close());
  const r = await receiver(cutter.url, 'roam', 'rosa');
  const sender = await connect(b.url, '/chat', { auth: { token: token({ sub: 'sol' }) } });
  cleanup.push(() => sender.close());
  assert.equal((await call(sender, 'join', { room: 'roam' })).ok, true);

  let onA = true;
  const flaps = setInterval(() => {
    if (a.proc.exitCode === null && a.proc.signalCode === null) {
      onA = !onA;
      cutter.target = onA ? a.url : b.url;
    }
    // A flap cuts an established connection (not one still handshaking).
    if (r.socket.connected) cutter.cut();
  }, 700);
  let killedAt = -1;
  let acked;
  try {
    acked = await send(sender, 'roam', 1000, {
      perTick: 2,
      onSent: (i) => {
        // Midway, while the receiver is on node A: kill A, point the proxy at B.
        if (killedAt < 0 && i >= 500 && onA && r.socket.connected) {
          killedAt = i;
          cutter.target = b.url;
          a.proc.kill('SIGKILL');
        }
      },
    });
  } finally {
    clearInterval(flaps);
  }
  assert.ok(killedAt > 0, 'node A was killed while serving the receiver');
  assert.equal(acked.length, 1000, 'every message was acked ok');
  await until(r, () => new Set(r.texts).size >= acked.length, 20000, 'not every acked message arrived').catch((e) => {
    const missing = acked.filter((t) => !r.texts.includes(t));
    throw new Error(`${e.message}: ${missing.length} missing (first ${missing.slice(0, 5)}), killed at ${killedAt}, connects ${JSON.stringify(r.connects)}, connected ${r.socket.connected}`);
  });
  assertExactlyOnceInOrder(r, acked);
  assertRecoveredEachTime(r, 4);
});

test('two nodes: the receivers\' node stalls for 2 s, then catches up: every acked message, once, in order, nobody cut off', async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const env = { PORTICO_REDIS_URL: redis.url };
  const config = tempFile('portico.toml', UNLIMITED);
  const [a, b] = await Promise.all([0, 1].map(() => startPortico({ plugins: ['chat'], env, args: ['--config', config] })));
  cleanup.push(() => a.stop(), () => { b.proc.kill('SIGCONT'); return b.stop(); });
  // One after another: the pre-join session cap counts handshakes per address.
  const rs = [];
  for (let i = 0; i < 16; i++) rs.push(await receiver(b.url, 'stall', `r${i}`));
  const sender = await connect(a.url, '/chat', { auth: { token: token({ sub: 'stan' }) } });
  cleanup.push(() => sender.close());
  assert.equal((await call(sender, 'join', { room: 'stall' })).ok, true);

  // Node B is frozen (a long GC-like pause, a noisy neighbour) while node A
  // goes on appending to the stream; the stall's length is the condition.
  let resumed;
  const acked = await send(sender, 'stall', 1000, {
    perTick: 2,
    onSent: (i) => {
      if (i !== 200) return;
      b.proc.kill('SIGSTOP');
      resumed = new Promise((ok) => setTimeout(() => ok(b.proc.kill('SIGCONT')), 2000));
    },
  });
  await resumed;
  assert.equal(acked.length, 1000, 'every message was acked ok');
  for (const [i, r] of rs.entries()) {
    await until(r, () => new Set(r.texts).size >= acked.length, 20000, `receiver ${i}: not every acked message arrived`);
    assertExactlyOnceInOrder(r, acked);
    assert.equal(r.connects.length, 1, `receiver ${i} was cut off and reconnected`);
  }
  const metrics = await (await fetch(`${b.url}/metrics`)).text();
  const count = (prefix) => metrics.split('\n').filter((l) => l.startsWith(prefix)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  assert.equal(count('portico_cluster_stream_gaps_total'), 0, 'node B lost its place in the stream');
  assert.equal(count('portico_slow_consumer_disconnects_total'), 0, 'a receiver was dropped as a slow consumer');
});

test('a receiver that stops reading is disconnected with slow_consumer, counted, and recovers what it missed', async () => {
  const API_KEY = 'slow-key';
  const node = await startPortico({ plugins: ['chat'], env: { PORTICO_API_KEY: API_KEY } });
  cleanup.push(() => node.stop());
  const r = await receiver(node.url, 'slow', 'sly');
  const told = [];
  r.socket.on('portico:disconnect', (info) => told.push(info));
  // Stop reading: the server's writes back up into its per-socket buffer.
  r.socket.io.engine.transport.ws._socket.pause();
  const big = 'x'.repeat(64 * 1024);
  const total = 300; // ~19 MiB: more than the socket buffers hold
  for (let i = 0; i < total; i++) {
    const res = await fetch(`${node.url}/api/v1/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ plugin: 'chat', channel: 'slow', event: 'message', data: { text: String(i), big } }),
    });
    assert.equal(res.status, 200);
  }
  const slowCount = async () => {
    const text = await (await fetch(`${node.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('portico_slow_consumer_disconnects_total{') && l.includes('transport="socketio"') && l.includes('plugin="chat"'));
    return Number(line?.split(' ').at(-1) ?? 0);
  };
  // Only the counter shows it: the socket that was told has stopped reading.
  await eventually('the slow consumer counted', async () => (await slowCount()) >= 1, { timeout: 5000, every: 50 });
  r.socket.io.engine.transport.ws._socket.resume();
  await until(r, () => new Set(r.texts).size >= total, 20000, 'the missed messages were not recovered')
  assert.deepEqual(told, [{ reason: 'slow_consumer' }]);
  assert.deepEqual(r.texts, Array.from({ length: total }, (_, i) => String(i)));
  assert.equal(r.connects.length, 2);
  assertRecoveredEachTime(r, 1);
});

test('a burst overflowing the outbox to Redis gets overloaded acks; every ok-acked message is delivered once', async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const env = { PORTICO_REDIS_URL: redis.url };
  const config = tempFile('portico.toml', `${UNLIMITED}[cluster]\noutbox = 2\n`);
  const [a, b] = await Promise.all([0, 1].map(() => startPortico({ plugins: ['chat'], env, args: ['--config', config] })));
  cleanup.push(() => a.stop(), () => b.stop());
  const r = await receiver(b.url, 'burst', 'rob');
  // One after another: more than 16 handshakes at once from one address
  // would meet the pre-join session cap (socketio.max_pending_sessions_per_ip).
  const senders = [];
  for (let i = 0; i < 30; i++) {
    senders.push(await connect(a.url, '/chat', { auth: { token: token({ sub: `s${i}` }) } }));
  }
  cleanup.push(() => senders.forEach((s) => s.close()));
  for (const s of senders) assert.equal((await call(s, 'join', { room: 'burst' })).ok, true);
  // Each socket's events run in order, so 30 sockets keep 30 publications in flight.
  const acks = await Promise.all(senders.flatMap((s, i) => Array.from({ length: 20 }, (_, j) => {
    const text = String(i * 1000 + j);
    return call(s, 'message', { room: 'burst', text }).then((ack) => ({ text, ack }));
  })));
  const ok = acks.filter((x) => x.ack.ok).map((x) => x.text);
  const refused = acks.filter((x) => !x.ack.ok);
  assert.ok(refused.length > 0, 'the burst overflowed the outbox');
  assert.ok(ok.length > 0, 'some messages got through');
  for (const { ack } of refused) assert.equal(ack.code, 'overloaded');
  await until(r, () => ok.every((t) => r.texts.includes(t)), 10000, 'an ok-acked message was not delivered');
  assert.equal(new Set(r.texts).size, r.texts.length, 'no message twice');
  const refusedTexts = new Set(refused.map((x) => x.text));
  assert.ok(!r.texts.some((t) => refusedTexts.has(t)), 'a refused message was delivered');
  const metrics = await (await fetch(`${a.url}/metrics`)).text();
  const line = metrics.split('\n').find((l) => l.startsWith('portico_cluster_overloaded_total '));
  assert.equal(Number(line.split(' ')[1]), refused.length);
});

test('a node started after events were published resumes an SSE client with exactly the missed events', async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const API_KEY = 'late-key';
  const env = { PORTICO_REDIS_URL: redis.url, PORTICO_API_KEY: API_KEY };
  const a = await startPortico({ plugins: ['chat'], env });
  cleanup.push(() => a.stop());
  const ids = [];
  for (let n = 1; n <= 10; n++) {
    const res = await fetch(`${a.url}/api/v1/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ plugin: 'chat', channel: 'late', event: 'item', data: { n } }),
    });
    assert.equal(res.status, 200);
    ids.push((await res.json()).id);
  }
  // Node C starts now: everything above predates it.
  const c = await startPortico({ plugins: ['chat'], env });
  cleanup.push(() => c.stop());
  const path = `/sse/chat?channel=late&access_token=${token({ sub: 'lena' })}`;
  const s = await openStream(c.url, path, { headers: { 'last-event-id': ids[3] } });
  cleanup.push(() => s.close());
  assert.equal(s.status, 200);
  await fetch(`${a.url}/api/v1/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ plugin: 'chat', channel: 'late', event: 'item', data: { n: 11 } }),
  });
  await s.waitFor((f) => f.event === 'item' && JSON.parse(f.data).n === 11);
  const got = s.frames.filter((f) => f.event === 'item').map((f) => JSON.parse(f.data).n);
  assert.deepEqual(got, [5, 6, 7, 8, 9, 10, 11]);
  assert.ok(!s.frames.some((f) => f.event === 'resync'), 'no resync: the history came from the stream');
});

test("a plugin's connection state comes back with a recovered session, on the same node and on another", async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const env = { PORTICO_REDIS_URL: redis.url };
  const [a, b] = await Promise.all([0, 1].map(() => startPortico({ plugins: ['probe'], env })));
  cleanup.push(() => a.stop(), () => b.stop());
  const cutter = await proxy(a.url);
  cleanup.push(() => cutter.close());
  const socket = io(`${cutter.url}/probe`, {
    auth: { token: token({ sub: 'sue' }) }, transports: ['websocket'], forceNew: true,
    reconnectionDelay: 20, reconnectionDelayMax: 40, randomizationFactor: 0,
  });
  cleanup.push(() => socket.close());
  await new Promise((ok, fail) => { socket.once('connect', ok); socket.once('connect_error', fail); });
  const id = socket.id;
  assert.equal((await call(socket, 'remember', { key: 'k', value: 'kept' })).ok, true);
  const reconnect = () => new Promise((ok) => { socket.once('connect', ok); cutter.cut(); });

  await reconnect(); // back to node A
  assert.equal(socket.recovered, true);
  assert.equal(socket.id, id);
  assert.equal((await call(socket, 'recall', { key: 'k' })).value, 'kept', 'state kept on the same node');

  cutter.target = b.url;
  await reconnect(); // now to node B
  assert.equal(socket.recovered, true);
  assert.equal(socket.id, id);
  assert.equal((await call(socket, 'recall', { key: 'k' })).value, 'kept', 'state carried to another node');
});
