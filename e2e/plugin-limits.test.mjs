// The plugin runtime's own limits against the real binary: a call stuck in a host call
// ends at its wall-clock deadline; a plugin whose instances are all stuck is refused fast
// (`plugin_busy`) while another plugin answers; a compile over its time limit is refused
// and changes nothing; a change the data directory cannot save is refused and undone; a
// damaged compiled-artifact cache is recompiled at start.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PLUGIN_DIR, startPortico, tempFile, connect, call, token } from './fixture.mjs';

const ADMIN = 'e2e-admin-token';
const nodes = [];
const sockets = [];
const servers = [];
after(async () => {
  sockets.forEach((s) => s.close());
  await Promise.all(nodes.map((n) => n.stop()));
  servers.forEach((s) => s.close());
});

async function start(opts) {
  const node = await startPortico(opts);
  nodes.push(node);
  return node;
}
async function open(url, ns) {
  const s = await connect(url, ns, { auth: { token: token({ sub: 'ann' }) } });
  sockets.push(s);
  return s;
}
/** A TCP server that accepts and never answers; its base URL. */
async function silent() {
  const held = [];
  const server = createServer((socket) => held.push(socket));
  servers.push(server);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  server.on('close', () => held.forEach((s) => s.destroy()));
  return `http://127.0.0.1:${server.address().port}`;
}
async function metric(node, line) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.slice(line.length + 1)) : 0;
}
async function admin(node, method, path, body) {
  const headers = { authorization: `Bearer ${ADMIN}` };
  if (body) headers['content-type'] = 'application/wasm';
  const res = await fetch(`${node.url}/admin/v1${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
const wasm = (name) => readFileSync(join(PLUGIN_DIR, `${name}.wasm`));

test('a call waiting on a host call ends at its wall-clock deadline; a stuck plugin is refused fast, others answer', async () => {
  const base = await silent();
  const config = tempFile('portico.toml', `
[plugins.probe]
outbound = ["${base}"]
outbound_timeout_ms = 30000
call_wall_timeout_ms = 1500
max_instances = 1
`);
  const node = await start({ plugins: ['probe', 'echo'], args: ['--config', config] });
  const probe = await open(node.url, '/probe');
  const other = await open(node.url, '/probe');
  const echo = await open(node.url, '/echo');

  // One call holds probe's only instance, waiting on a backend that never answers.
  const started = Date.now();
  const stuck = call(probe, 'fetch', { url: `${base}/` });
  // Meanwhile another call of probe is refused at once, and echo answers.
  let busy;
  for (let i = 0; i < 100 && busy?.code !== 'plugin_busy'; i++) {
    const t = Date.now();
    busy = await call(other, 'remember', { key: 'k', value: 'v' });
    if (busy.code === 'plugin_busy') assert.ok(Date.now() - t < 500, 'refused fast');
  }
  assert.deepEqual([busy.ok, busy.code], [false, 'plugin_busy'], JSON.stringify(busy));
  assert.deepEqual(await call(echo, 'e', 1), 1);

  const ack = await stuck;
  const took = Date.now() - started;
  assert.deepEqual([ack.ok, ack.code], [false, 'plugin_timeout'], JSON.stringify(ack));
  assert.match(ack.message, /wall-clock/);
  assert.ok(took >= 1400 && took < 5000, `took ${took} ms`);
  // The instance is free again: probe answers.
  const ok = await call(other, 'remember', { key: 'k', value: 'v' });
  assert.equal(ok.ok, true, JSON.stringify(ok));

  assert.equal(await metric(node, 'portico_plugin_traps_total{plugin="probe",version="0.1.0",role="active",kind="wall_timeout"}'), 1);
  assert.ok(await metric(node, 'portico_plugin_busy_total{plugin="probe",version="0.1.0",role="active"}') >= 1);
});

test('a compile over runtime.compile_timeout_ms is refused with 503 compile_timeout and changes nothing', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'portico-compile-cache-'));
  const node = await start({
    plugins: [],
    args: ['--admin-token', ADMIN, '--cache-dir', cache],
    env: { PORTICO_RUNTIME__COMPILE_TIMEOUT_MS: '1' },
  });
  const res = await admin(node, 'PUT', '/plugins/echo', wasm('echo'));
  assert.equal(res.status, 503, JSON.stringify(res.body));
  assert.equal(res.body.error.code, 'compile_timeout');
  assert.deepEqual((await admin(node, 'GET', '/plugins')).body.plugins, []);
  assert.equal(await metric(node, 'portico_plugin_compile_timeouts_total'), 1);
});

test('a change the data directory cannot save is refused with 500 not_saved and the previous set keeps serving', async () => {
  const data = mkdtempSync(join(tmpdir(), 'portico-notsaved-'));
  const node = await start({ plugins: [], args: ['--admin-token', ADMIN, '--data-dir', data] });
  assert.equal((await admin(node, 'PUT', '/plugins/echo', wasm('echo'))).status, 201);
  const echo = await open(node.url, '/echo');
  assert.deepEqual(await call(echo, 'e', 1), 1);

  // A regular file where the blobs directory was: every save fails (even as root).
  rmSync(join(data, 'blobs'), { recursive: true });
  writeFileSync(join(data, 'blobs'), 'not a directory');
  for (const [method, path, body] of [['PUT', '/plugins/chat', wasm('chat')], ['PUT', '/plugins/echo', wasm('faulty')], ['DELETE', '/plugins/echo']]) {
    const res = await admin(node, method, path, body);
    assert.equal(res.status, 500, `${method} ${path}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'not_saved');
  }
  const names = (await admin(node, 'GET', '/plugins')).body.plugins.map((p) => p.name);
  assert.deepEqual(names, ['echo']);
  assert.equal((await admin(node, 'GET', '/plugins/echo/versions')).body.revisions.length, 1);
  assert.equal(echo.connected, true);
  assert.deepEqual(await call(echo, 'e', 2), 2, 'echo (not faulty) still serves');

  // Once the directory is writable again, changes are saved.
  rmSync(join(data, 'blobs'));
  mkdirSync(join(data, 'blobs'));
  assert.equal((await admin(node, 'PUT', '/plugins/chat', wasm('chat'))).status, 201);
});

test('a cut-short or damaged compiled artifact is recompiled at start; a leftover temporary file is removed', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'portico-damaged-cache-'));
  const first = await start({ plugins: ['echo'], args: ['--cache-dir', cache] });
  await first.stop();
  const files = readdirSync(cache).filter((f) => f.endsWith('.cwasm'));
  assert.equal(files.length, 1, files.join());
  const artifact = join(cache, files[0]);
  const good = readFileSync(artifact);
  writeFileSync(artifact, good.subarray(0, good.length >> 1));
  writeFileSync(join(cache, `${files[0]}.tmp999999`), 'half of an artifact');

  const second = await start({ plugins: ['echo'], args: ['--cache-dir', cache] });
  const echo = await open(second.url, '/echo');
  assert.deepEqual(await call(echo, 'e', 3), 3);
  assert.equal(statSync(artifact).size, good.length, 'rewritten whole');
  assert.deepEqual(readdirSync(cache).filter((f) => f.includes('.tmp')), []);
  assert.match(second.logs(), /damaged or cut short/);
});
