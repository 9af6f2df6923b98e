// Outbound HTTP from a plugin to a local server started here: the allowed origin works;
// another origin, a name resolving to a private address, a redirect out of the list, a slow
// and a huge response are each refused or cut with a clear error ack; other plugins keep
// serving meanwhile; /metrics counts requests and errors by plugin and origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startPortico, tempFile, call, clients } from './fixture.mjs';

let node;
let backend;
let other;
let base;
const { openAs, closeAll } = clients();
const slow = new Set();

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
outbound_timeout_ms = 400
outbound_max_response_bytes = 10000
outbound_max_in_flight = 4
`);
  node = await startPortico({ plugins: ['probe', 'echo'], args: ['--config', config] });
});
after(async () => {
  closeAll();
  for (const res of slow) res.end('late');
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
  assert.match(ack.message, /400 ms/);
  // The probe itself serves its other events after the timeout.
  assert.equal((await call(s, 'fetch', { url: `${base}/hello` })).status, 200);
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
