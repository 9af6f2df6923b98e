// Flood protection end to end: per-socket event buckets (error acks, drops,
// disconnect of a flooder while others keep flowing), per-plugin overrides,
// per-IP connection limits, and the payload cap.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPortico, tempFile, call, disconnected, eventually, clients } from './fixture.mjs';

let node;
const { open, sockets, closeAll } = clients();

before(async () => {
  const config = tempFile('portico.toml', `
[throttle]
events_per_sec = 200
event_burst = 50
flood_max_rejected = 300
flood_window_secs = 10
connections_per_sec = 1
connection_burst = 30

[socketio]
max_payload = 50000
# Room for every rate_limited ack of a flood (flood_max_rejected) in the socket's buffer.
max_buffer_size = 1024

[plugins.faulty]
events_per_sec = 1
event_burst = 5
`);
  node = await startPortico({ plugins: ['echo', 'faulty'], args: ['--config', config] });
});
after(async () => { closeAll(); await node.stop(); });

/** Emit with an ack and resolve with the first ack argument, or 'no ack' if the socket closes first. */
const emitAck = (s, ...args) => new Promise((ok) => {
  s.emit(...args, (reply) => ok(reply));
  s.once('disconnect', () => ok('no ack'));
});

test('a client flooding 10,000 events/s gets rate_limited acks and is disconnected; another client keeps its acks', async () => {
  const flooder = await open(node.url, '/echo');
  const calm = await open(node.url, '/echo');
  const gone = disconnected(flooder, 15000);

  let calmOk = 0;
  let calmFailed = 0;
  let flooding = true;
  // The calm client sends 100 events/s, well within its own limit.
  const calmLoop = (async () => {
    while (flooding) {
      // Pacing, not waiting: at most one event per 10 ms.
      const [r] = await Promise.all([call(calm, 'tick', { n: calmOk }), new Promise((t) => setTimeout(t, 10))]);
      if (r?.n === calmOk) calmOk += 1; else calmFailed += 1;
    }
  })();

  // 100 events every 10 ms: 10,000 events/s for (up to) one second.
  const replies = [];
  await new Promise((done) => {
    let sent = 0;
    const timer = setInterval(() => {
      if (!flooder.connected || sent >= 10000) { clearInterval(timer); done(); return; }
      for (let i = 0; i < 100; i += 1) { replies.push(emitAck(flooder, 'spam', i)); sent += 1; }
    }, 10);
  });
  const { reason, told } = await gone;
  flooding = false;
  await calmLoop;

  // The reason always arrives first. Socket.IO's own reason is `io server disconnect`,
  // or `transport close` when the flooder's packets still in flight reach the server after
  // the namespace is closed (socketioxide then closes the whole connection).
  assert.deepEqual(told, { reason: 'rate_limited' });
  assert.match(reason, /^(io server disconnect|transport close)$/);
  const settled = await Promise.all(replies);
  const delivered = settled.filter((r) => typeof r === 'number').length;
  const limited = settled.filter((r) => r?.code === 'rate_limited');
  assert.ok(delivered >= 50 && delivered < 1000, `delivered ${delivered}`);
  // Every rejection up to the threshold was answered before the disconnect.
  assert.ok(limited.length >= 300, `rate_limited acks: ${limited.length}`);
  assert.equal(limited[0].ok, false);
  assert.match(limited[0].message, /not delivered/);
  assert.equal(calmFailed, 0);
  assert.ok(calmOk > 0);
  // The calm client still works after the flooder is gone.
  assert.deepEqual(await call(calm, 'after', 'x'), 'x');
});

test('over-limit events without an ack are dropped, never delivered to the plugin', async () => {
  const s = await open(node.url, '/echo');
  let echoed = 0;
  s.on('burst', () => { echoed += 1; });
  for (let i = 0; i < 120; i += 1) s.emit('burst', i);
  // The queue is ordered: once an acked call goes through, every earlier event was handled.
  // Whether one goes through depends on the bucket refilling, which only a call shows:
  // retry every 50 ms; anything but 1 or rate_limited ends the retries and fails below.
  const passed = await eventually('an acked probe through the bucket', async () => {
    const r = await call(s, 'probe', 1);
    return r?.code === 'rate_limited' ? null : { r };
  }, { every: 50 });
  assert.equal(passed.r, 1);
  assert.ok(echoed >= 50 && echoed < 120, `echoed ${echoed} of 120`);
  assert.equal(s.connected, true, 'under the flood threshold the socket stays');
});

test('a plugin can have its own, stricter rate', async () => {
  const s = await open(node.url, '/faulty');
  const replies = await Promise.all(Array.from({ length: 8 }, () => call(s, 'ok')));
  assert.equal(replies.filter((r) => r.ok === true).length, 5);
  assert.deepEqual(replies.slice(5).map((r) => r.code), ['rate_limited', 'rate_limited', 'rate_limited']);
  // echo's bucket for another socket is untouched.
  const e = await open(node.url, '/echo');
  assert.deepEqual(await call(e, 'x', 1), 1);
});

test('an oversized payload is refused and the server keeps serving others', async () => {
  const other = await open(node.url, '/echo');
  for (const transports of [['websocket'], ['polling']]) {
    const big = await open(node.url, '/echo', { transports });
    const gone = disconnected(big);
    const reply = emitAck(big, 'huge', 'x'.repeat(60000));
    const { reason } = await gone;
    assert.match(reason, /transport (close|error)/, transports[0]);
    assert.equal(await reply, 'no ack', `${transports[0]}: the plugin never answered`);
    assert.deepEqual(await call(other, 'still', transports[0]), transports[0]);
  }
  // Just under the cap passes.
  assert.equal((await call(other, 'fits', 'y'.repeat(40000))).length, 40000);
});

test('new connections are limited per IP address with rate_limited', async () => {
  // The burst is 30 and refills at 1/s; the tests above used part of it.
  let refused;
  for (let i = 0; i < 40 && !refused; i += 1) {
    try { await open(node.url, '/echo'); } catch (err) { refused = err; }
  }
  assert.ok(refused, 'some connection was refused');
  assert.match(refused.message, /^rate_limited: /);
  // Existing connections are not affected.
  assert.deepEqual(await call(sockets[1], 'alive', 1), 1);
});

test("a slow plugin call: the socket's queue stays bounded, the surplus answered overloaded at once", async () => {
  const config = tempFile('portico.toml', `
[socketio]
max_queued_events = 8

[plugins.faulty]
events_per_sec = 0
call_timeout_ms = 1500
`);
  const slow = await startPortico({ plugins: ['faulty'], args: ['--config', config] });
  const { open: openSlow, closeAll: closeSlow } = clients();
  try {
    const s = await openSlow(slow.url, '/faulty');
    const calls = async () => {
      const text = await (await fetch(`${slow.url}/metrics`)).text();
      return Number(text.match(/^portico_plugin_calls_total\{[^}]*plugin="faulty"[^}]*\} (\d+)$/m)?.[1]);
    };
    const callsBefore = await calls();
    // `loop` spins until its 1.5 s CPU deadline. The queue holds 8 waiting
    // events at most: those read in the same burst as `loop` may be taken
    // into its call (`on-events`) and share its fate (plugin_timeout), at most
    // the 8 that waited (7 beside `loop` itself if it had not left the queue
    // yet); up to 8 more wait behind that call and are served; every other
    // event is refused at once.
    const spinning = emitAck(s, 'loop');
    const t0 = Date.now();
    const answers = await Promise.all(Array.from({ length: 30 }, () =>
      emitAck(s, 'ok').then((a) => ({ a, ms: Date.now() - t0 }))));
    const refused = answers.filter(({ a }) => a?.code === 'overloaded');
    const served = answers.filter(({ a }) => a?.ok === true);
    const withLoop = answers.filter(({ a }) => a?.code === 'plugin_timeout');
    assert.equal(served.length + withLoop.length + refused.length, 30, JSON.stringify(answers));
    assert.ok(withLoop.length <= 8 && served.length <= 8, JSON.stringify(answers));
    assert.ok(refused.length >= 30 - 8 - 8, JSON.stringify(answers));
    // Refusals do not wait for the slow call; the queued events do.
    assert.ok(refused.every(({ ms }) => ms < 1000), JSON.stringify(refused));
    assert.ok([...served, ...withLoop].every(({ ms }) => ms >= 1000), JSON.stringify(served));
    assert.equal((await spinning).code, 'plugin_timeout');
    // Those that waited behind the slow call went to the plugin together, in
    // one call (`on-events`).
    assert.equal(await calls() - callsBefore, served.length > 0 ? 2 : 1);
    const metrics = await (await fetch(`${slow.url}/metrics`)).text();
    assert.match(metrics, new RegExp(`^portico_refused_total\\{limit="socket_queue"\\} ${refused.length}$`, 'm'));
  } finally {
    closeSlow();
    await slow.stop();
  }
});
