// Outbound HTTP from a plugin to a local server started here: the allowed origin works;
// another origin, a name resolving to a private address, a redirect out of the list, a slow
// and a huge response are each refused or cut with a clear error ack; other plugins keep
// serving meanwhile; the per-plugin in-flight cap holds exactly, frees its slots and starves
// no other plugin; /metrics counts requests and errors by plugin and origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import { startPortico, pluginDir, tempFile, call, clients } from './fixture.mjs';

let node;
let backend;
let other;
let base;
const { openAs, closeAll } = clients();
const slow = new Set();
// `/hold` requests stay open until the test answers them; `changed` fires at every arrival
// and every end, and `maxHeld` is the most that were open at once.
const held = new Set();
const changed = new EventEmitter();
let maxHeld = 0;

function listen(server) {
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port)));
}

before(async () => {
  backend = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/hello') {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => res.end(JSON.stringify({ method: req.method, body })));
    } else if (url.pathname === '/huge') {
      res.end('x'.repeat(50_000));
    } else if (url.pathname === '/hold') {
      held.add(res);
      maxHeld = Math.max(maxHeld, held.size);
      res.on('close', () => { held.delete(res); changed.emit('change'); });
      changed.emit('change');
    } else if (url.pathname === '/slow') {
      slow.add(res); // answered when the test ends
    } else if (url.pathname === '/hop') {
      res.writeHead(302, { location: '/hello' }).end();
    } else if (url.pathname === '/away') {
      res.writeHead(302, { location: `http://127.0.0.1:${other.address().port}/` }).end();
    } else {
      res.writeHead(404).end('no');
    }
  });
  other = createServer((req, res) => res.end('should never be reached'));
  const port = await listen(backend);
  await listen(other);
  base = `http://127.0.0.1:${port}`;
  const config = tempFile('portico.toml', `
[plugins.probe]
outbound = ["${base}", "http://localhost:${port}"]
# Room for a first request on a busy machine (a 400 ms deadline once timed out the
# first fetch of the run); the slow backend never answers in time either way.
outbound_timeout_ms = 2000
outbound_max_response_bytes = 10000
outbound_max_in_flight = 4

# The probe again, with a cap of 2 and no hurry (held requests wait for the test).
[plugins.capped]
outbound = ["${base}"]
outbound_timeout_ms = 30000
outbound_max_in_flight = 2
`);
  const dir = pluginDir(['probe', 'echo'], { capped: 'probe' });
  node = await startPortico({ dir, args: ['--config', config] });
});
after(async () => {
  closeAll();
  for (const res of slow) res.end('late');
  for (const res of held) res.end('late');
  await node.stop();
  backend.close();
  other.close();
});

const open = (ns) => openAs(node, ns, 'ann');

test('the allowed origin answers, redirects within it are followed', async () => {
  const s = await open('/probe');
  const ack = await call(s, 'fetch', { url: `${base}/hello`, method: 'POST', body: 'hi' });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.status, 200);
  assert.deepEqual(JSON.parse(ack.body), { method: 'POST', body: 'hi' });
  const hop = await call(s, 'fetch', { url: `${base}/hop` });
  assert.deepEqual(JSON.parse(hop.body), { method: 'GET', body: '' });
});

test('everything else is refused or cut with a clear error ack', async () => {
  const s = await open('/probe');
  const cases = [
    ['another origin', `http://127.0.0.1:${other.address().port}/`, 'outbound_forbidden'],
    ['a name that resolves to a private address', `http://localhost:${new URL(base).port}/hello`, 'outbound_blocked'],
    ['a redirect out of the list', `${base}/away`, 'outbound_forbidden'],
    ['a huge response', `${base}/huge`, 'outbound_too_large'],
    ['not http', 'file:///etc/passwd', 'outbound_invalid'],
  ];
  for (const [what, url, code] of cases) {
    const ack = await call(s, 'fetch', { url });
    assert.equal(ack.ok, false, `${what}: ${JSON.stringify(ack)}`);
    assert.equal(ack.code, code, `${what}: ${JSON.stringify(ack)}`);
    assert.ok(ack.message.length > 10, ack.message);
  }
});

test('a slow backend times out while other plugins keep serving', async () => {
  const s = await open('/probe');
  const echo = await open('/echo');
  const pending = call(s, 'fetch', { url: `${base}/slow` });
  // While the request waits on the backend, another plugin answers at once.
  for (let i = 0; i < 20; i++) assert.deepEqual(await call(echo, 'e', i), i);
  const ack = await pending;
  assert.equal(ack.code, 'outbound_timeout', JSON.stringify(ack));
  assert.match(ack.message, /2000 ms/);
  // The probe itself serves its other events after the timeout.
  assert.equal((await call(s, 'fetch', { url: `${base}/hello` })).status, 200);
});

/**
 * Resolve once `check()` is true, re-checked at every change of the backend's held requests
 * and at every ack; reject as soon as it throws (a failed assertion), or after `ms`.
 */
function until(what, check, ms = 10000) {
  return new Promise((ok, fail) => {
    const done = (settle, value) => { clearTimeout(timer); changed.off('change', look); settle(value); };
    const timer = setTimeout(() => {
      done(fail, new Error(`timed out waiting for ${what} (held now ${held.size}, at most ${maxHeld})`));
    }, ms);
    function look() {
      try {
        if (check()) done(ok);
      } catch (err) {
        done(fail, err);
      }
    }
    changed.on('change', look);
    look();
  });
}

/** Answer every held request. */
function release() {
  for (const res of held) res.end('released');
  held.clear();
}

/** A `fetch` of `/hold` on each socket at once; `changed` also fires at every ack. */
function holdAll(socks) {
  const acked = [];
  const acks = socks.map((s) => s.timeout(20000).emitWithAck('fetch', { url: `${base}/hold` }).then((ack) => {
    acked.push(ack);
    changed.emit('change');
    return ack;
  }));
  return { acked, all: () => Promise.all(acks) };
}

test('the in-flight cap: N requests reach the backend, the rest are busy, the slots free up', async () => {
  const N = 2;
  const K = 3;
  // Calls of one socket run in order: one socket per concurrent call.
  const socks = await Promise.all(Array.from({ length: N + K }, () => open('/capped')));
  const first = holdAll(socks);
  await until(`${N} held requests and ${K} acks`, () => {
    assert.ok(held.size <= N, `${held.size} requests at the backend at once, the cap is ${N}`);
    assert.ok(first.acked.length <= K, `${first.acked.length} calls answered while ${N} should be held`);
    return held.size === N && first.acked.length === K;
  });
  // Every call is accounted for: N wait at the backend, K were refused without reaching it.
  assert.equal(maxHeld, N);
  for (const ack of first.acked) {
    assert.equal(ack.code, 'outbound_busy', JSON.stringify(ack));
    assert.match(ack.message, new RegExp(`\\b${N} requests\\b`), ack.message);
  }
  release();
  const answered = (await first.all()).filter((a) => a.ok);
  assert.deepEqual(answered.map((a) => [a.status, a.body]), Array(N).fill([200, 'released']));

  // Every slot is free again: N more reach the backend; one over the cap is still busy, while
  // another plugin (the probe, its own cap) is served meanwhile.
  const second = holdAll(socks.slice(0, N));
  await until(`${N} held requests again`, () => {
    assert.ok(held.size <= N, `${held.size} requests at the backend at once, the cap is ${N}`);
    assert.equal(second.acked.length, 0, `answered while held: ${JSON.stringify(second.acked)}`);
    return held.size === N;
  });
  const over = await call(socks[N], 'fetch', { url: `${base}/hello` });
  assert.equal(over.code, 'outbound_busy', JSON.stringify(over));
  const probe = await open('/probe');
  const served = await call(probe, 'fetch', { url: `${base}/hello` });
  assert.equal(served.status, 200, JSON.stringify(served));
  assert.equal(maxHeld, N);
  release();
  assert.deepEqual((await second.all()).map((a) => [a.status, a.body]), Array(N).fill([200, 'released']));
  const freed = await call(socks[N], 'fetch', { url: `${base}/hello` });
  assert.equal(freed.status, 200, JSON.stringify(freed));

  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = (prefix) => text.split('\n').find((l) => l.startsWith(prefix));
  const count = (prefix) => Number(line(prefix)?.split(' ').pop());
  assert.equal(count(`portico_plugin_outbound_errors_total{plugin="capped",origin="${base}",kind="busy"}`), K + 1, text);
  assert.equal(count(`portico_plugin_outbound_requests_total{plugin="capped",origin="${base}"}`), N + K + N + 1 + 1, text);
  assert.equal(line(`portico_plugin_outbound_errors_total{plugin="probe",origin="${base}",kind="busy"}`), undefined, text);
});

test('/metrics counts requests and errors by plugin and origin', async () => {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const value = (prefix) => {
    const line = text.split('\n').find((l) => l.startsWith(prefix));
    return line ? Number(line.split(' ').pop()) : undefined;
  };
  const origin = `${base}`;
  assert.ok(value(`portico_plugin_outbound_requests_total{plugin="probe",origin="${origin}"}`) >= 5, text);
  assert.ok(value(`portico_plugin_outbound_errors_total{plugin="probe",origin="${origin}",kind="timeout"}`) >= 1);
  assert.ok(value(`portico_plugin_outbound_errors_total{plugin="probe",origin="${origin}",kind="too_large"}`) >= 1);
  assert.ok(value(`portico_plugin_outbound_errors_total{plugin="probe",origin="http://127.0.0.1:${other.address().port}",kind="forbidden"}`) >= 1);
  assert.ok(value(`portico_plugin_outbound_duration_seconds_count{plugin="probe",origin="${origin}"}`) >= 5);
});
