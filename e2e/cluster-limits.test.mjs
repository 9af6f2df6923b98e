// Cluster mode under hostile or broken data: KV budgets hold across nodes, keys
// written without a TTL expire after a node dies (runtime.kv_default_ttl_secs),
// and garbage written into Redis is refused and counted while the node keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startPortico, connect, call, token, eventually } from './fixture.mjs';
import { startRedis } from './redis.mjs';

const ADMIN = 'e2e-admin-token';
let redis;
const nodes = [];
const sockets = [];

async function start(plugins, env = {}) {
  const node = await startPortico({ plugins, env: { PORTICO_REDIS_URL: redis.url, ...env }, args: ['--admin-token', ADMIN] });
  nodes.push(node);
  return node;
}
async function open(node, ns, sub = 'alice') {
  const s = await connect(node.url, ns, { auth: { token: token({ sub }) } });
  sockets.push(s);
  return s;
}
/** redis-cli against the test's server; `stdin` becomes the last argument (raw bytes). */
function cli(args, stdin) {
  return execFileSync('redis-cli', ['-p', String(redis.port), ...(stdin === undefined ? [] : ['-x']), ...args], { input: stdin }).toString().trim();
}
async function metric(node, name, labels) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
  return line ? Number(line.split(' ').pop()) : 0;
}
async function presence(node, channel) {
  const res = await fetch(`${node.url}/admin/v1/plugins/chat/presence/${channel}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(res.status, 200);
  return (await res.json()).members;
}

before(async () => {
  redis = await startRedis();
});
after(async () => {
  sockets.forEach((s) => s.close());
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.stop();
});

test('the KV key budget holds across two nodes; refusals ack kv_full and are counted', async () => {
  cli(['FLUSHALL']);
  const env = { PORTICO_RUNTIME__KV_MAX_KEYS: '3' };
  const [a, b] = [await start(['counter'], env), await start(['counter'], env)];
  const [sa, sb] = [await open(a, '/counter'), await open(b, '/counter')];
  for (const [s, name] of [[sa, 'n1'], [sa, 'n2'], [sb, 'n3']]) {
    assert.equal((await call(s, 'hit', { name })).ok, true, name);
  }
  for (const s of [sb, sa]) {
    const ack = await call(s, 'hit', { name: 'n4' });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.code, 'kv_full', JSON.stringify(ack));
    assert.match(ack.message, /at most 3 keys/);
  }
  // Existing keys still count.
  assert.deepEqual(await call(sb, 'hit', { name: 'n1' }), { ok: true, name: 'n1', value: 2 });
  for (const n of [a, b]) {
    assert.equal(await metric(n, 'portico_plugin_kv_refused_total', { plugin: 'counter', limit: 'keys' }), 1);
  }
  assert.equal(cli(['HLEN', 'portico:kvmeta:counter:sizes']), '3');
});

test("a dead node's keys written without a TTL expire with runtime.kv_default_ttl_secs", async () => {
  cli(['FLUSHALL']);
  const env = { PORTICO_RUNTIME__KV_DEFAULT_TTL_SECS: '1' };
  const a = await start(['counter'], env);
  const b = await start(['counter'], env);
  assert.equal((await call(await open(a, '/counter'), 'hit', { name: 'conn-1' })).value, 1);
  const ttl = Number(cli(['PTTL', 'portico:kv:counter:count:conn-1']));
  assert.ok(ttl > 0 && ttl <= 1000, `PTTL ${ttl}`);
  a.proc.kill('SIGKILL');
  const sb = await open(b, '/counter');
  await eventually('the key to expire', async () => (await call(sb, 'get', { name: 'conn-1' })).value === 0, { timeout: 3000, every: 50 });
});

test('garbage in Redis is refused and counted; the node keeps serving', async () => {
  cli(['FLUSHALL']);
  // Before the node starts: a removal of echo it must not apply (a node id far
  // over the bounds), an unreadable record, a record for a bad name.
  const removal = JSON.stringify({ generation: 1, node: 'x'.repeat(1000), change: 'c', removed: true, mount: '', sha256: '', config: {}, limits: { call_timeout_ms: 100, memory_bytes: 1, isolation: 'pooled', max_warm: 1 } });
  cli(['HSET', 'portico:plugins:state', 'echo', removal]);
  cli(['HSET', 'portico:plugins:state', 'junk', '{not json']);
  cli(['HSET', 'portico:plugins:state', 'Bad/Name', removal.replace('x'.repeat(1000), 'n')]);
  cli(['SET', 'portico:plugins:gen', 'garbage']);
  // Presence: garbage members in chat's room, and a room key of the wrong type.
  cli(['HSET', 'portico:presence:chat:lobby', 'ghost', '{not json']);
  cli(['HSET', 'portico:presence:chat:lobby', 'ghost2', '{"node":""}']);
  cli(['HSET', 'portico:presence:chat:lobby', 'ghost3'], Buffer.from([0xff, 0xfe]));
  cli(['SET', 'portico:presence:chat:broken', 'x']);
  // KV: a counter's value of the wrong type, and garbled bookkeeping.
  cli(['HSET', 'portico:kv:counter:count:weird', 'f', 'v']);
  cli(['SET', 'portico:kvmeta:counter:bytes', 'not a number']);
  cli(['SET', 'portico:kvmeta:counter:sizes', 'not a hash']);

  const node = await start(['echo', 'chat', 'counter']);
  const echo = await open(node, '/echo');
  assert.equal(await call(echo, 'echo', 'still here'), 'still here');
  // After start: garbage change notifications and another unreadable record.
  cli(['PUBLISH', 'portico:plugins:changed', '{garbage']);
  cli(['PUBLISH', 'portico:plugins:changed', JSON.stringify({ node: 'other', name: 'junk2', generation: 9 })]);
  cli(['HSET', 'portico:plugins:state', 'junk2'], Buffer.from([0xff, 0x00, 0x7b]));

  const chat = await open(node, '/chat');
  assert.equal((await call(chat, 'join', { room: 'lobby' })).ok, true);
  assert.deepEqual((await presence(node, 'lobby')).map((m) => m.socket), [chat.id]);
  assert.deepEqual(await presence(node, 'broken'), []);
  assert.equal((await call(chat, 'join', { room: 'broken' })).ok, true);
  assert.deepEqual((await presence(node, 'broken')).map((m) => m.socket), [chat.id]);

  const counter = await open(node, '/counter');
  const weird = await call(counter, 'hit', { name: 'weird' });
  assert.equal(weird.ok, false, JSON.stringify(weird));
  assert.deepEqual(await call(counter, 'hit', { name: 'fine' }), { ok: true, name: 'fine', value: 1 });

  // The admin API still shares changes (the garbled generation counter starts again).
  const put = await fetch(`${node.url}/admin/v1/plugins/echo?config.version=9.9.9`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/wasm' },
    body: (await import('node:fs')).readFileSync(`${node.pluginPath}/echo.wasm`),
  });
  assert.ok(put.status < 300, `upload: ${put.status} ${await put.text()}`);
  assert.equal(JSON.parse(cli(['HGET', 'portico:plugins:state', 'echo'])).node.length < 1000, true);

  await eventually('the unreadable record seen by the reconcile', async () => await metric(node, 'portico_redis_refused_total', { kind: 'plugin_record' }) >= 4, { timeout: 8000, every: 100 });
  assert.ok(await metric(node, 'portico_redis_refused_total', { kind: 'presence_entry' }) >= 4);
  assert.equal(await metric(node, 'portico_redis_refused_total', { kind: 'plugin_generation' }), 1);
  assert.equal(await call(echo, 'echo', 'still here'), 'still here');
  assert.equal((await fetch(`${node.url}/healthz`)).status, 200);
  assert.equal(node.proc.exitCode, null);
  assert.doesNotMatch(node.logs(), /panicked/);
  assert.match(node.logs(), /plugin record in redis refused, not applied/);
});
