// Plugins across nodes: an upload, rollback or removal through the admin API
// of one node reaches every node; a node started later serves the current set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PLUGIN_DIR, startPortico, connect, call, disconnected, token, eventually } from './fixture.mjs';
import { startRedis } from './redis.mjs';

const ADMIN = 'e2e-admin-token';
const CACHE = mkdtempSync(join(tmpdir(), 'portico-cluster-plugins-cache-'));
/** How long a change may take to reach another node. */
const PROPAGATION_MS = 3000;
const wasm = (name) => readFileSync(join(PLUGIN_DIR, `${name}.wasm`));

let redis;
const nodes = [];
const sockets = [];
async function start(plugins = ['chat']) {
  const node = await startPortico({
    plugins,
    env: { PORTICO_REDIS_URL: redis.url },
    args: ['--admin-token', ADMIN, '--cache-dir', CACHE],
  });
  nodes.push(node);
  return node;
}

async function admin(node, method, path, { body, query = '' } = {}) {
  const headers = { authorization: `Bearer ${ADMIN}` };
  if (body !== undefined) headers['content-type'] = 'application/wasm';
  const res = await fetch(`${node.url}/admin/v1${path}${query ? `?${query}` : ''}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Poll `check` until it returns a truthy value; resolves with { value, ms }. */
async function within(what, ms, check) {
  const t0 = Date.now();
  const value = await eventually(`${what} (within ${ms} ms)`, check, { timeout: ms });
  return { value, ms: Date.now() - t0 };
}

/** The version a client of `node` is served on `ns` (echo's `whoami`-free check: chat's manifest through admin). */
const activeVersion = async (node, name) => {
  const res = await admin(node, 'GET', `/plugins/${name}`);
  return res.status === 200 ? res.body.version : null;
};

async function open(node, ns, sub = 'alice') {
  const s = await connect(node.url, ns, { auth: { token: token({ sub }) } });
  sockets.push(s);
  return s;
}

before(async () => {
  redis = await startRedis();
});
after(async () => {
  sockets.forEach((s) => s.close());
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.stop();
});

test('a plugin pushed to node A serves on node B within 3 s, and on a node started later', async () => {
  const [a, b] = await Promise.all([start(), start()]);
  assert.equal((await admin(a, 'PUT', '/plugins/echo', { body: wasm('echo') })).status, 201);
  const { value: socket, ms } = await within('echo on node B', PROPAGATION_MS, () => open(b, '/echo'));
  console.log(`# upload reached node B in ${ms} ms`);
  assert.deepEqual(await call(socket, 'echo', 'hi'), 'hi');

  const c = await start();
  const late = await open(c, '/echo');
  assert.deepEqual(await call(late, 'echo', 'late'), 'late');
  assert.equal((await admin(c, 'GET', '/plugins/echo')).body.sha256, (await admin(a, 'GET', '/plugins/echo')).body.sha256);
});

test('a new version, a rollback and a removal on one node reach the others', async () => {
  const [a, b] = await Promise.all([start(), start()]);
  assert.equal(await activeVersion(b, 'chat'), '0.1.0');
  assert.equal((await admin(a, 'PUT', '/plugins/chat', { body: wasm('chat'), query: 'config.version=2.0.0' })).status, 200);
  const up = await within('2.0.0 on node B', PROPAGATION_MS, async () => (await activeVersion(b, 'chat')) === '2.0.0');
  console.log(`# new version reached node B in ${up.ms} ms`);

  // Rolled back through node B this time: node A follows.
  assert.equal((await admin(b, 'POST', '/plugins/chat/rollback')).status, 200);
  const back = await within('rollback on node A', PROPAGATION_MS, async () => (await activeVersion(a, 'chat')) === '0.1.0');
  console.log(`# rollback reached node A in ${back.ms} ms`);

  const client = await open(b, '/chat', 'bob');
  const gone = disconnected(client, PROPAGATION_MS + 2000);
  assert.equal((await admin(a, 'DELETE', '/plugins/chat')).status, 200);
  const t0 = Date.now();
  const { told } = await gone;
  console.log(`# removal reached node B's client in ${Date.now() - t0} ms`);
  assert.deepEqual(told, { reason: 'plugin_removed' });
  assert.equal((await admin(b, 'GET', '/plugins/chat')).status, 404);

  // A node started later with chat in its --plugins does not serve it: the cluster removed it.
  const c = await start();
  assert.equal((await admin(c, 'GET', '/plugins/chat')).status, 404);
});

test('a change made while Redis is away reaches the other node once Redis is back (empty), and a later node has it', async () => {
  const [a, b] = await Promise.all([start(), start()]);
  // A name of its own: the earlier test removed chat from the cluster.
  assert.equal((await admin(a, 'PUT', '/plugins/talk', { body: wasm('chat'), query: 'config.version=3.0.0' })).status, 201);
  await within('3.0.0 on node B', PROPAGATION_MS, async () => (await activeVersion(b, 'talk')) === '3.0.0');

  await redis.stop();
  // The change serves on node A at once; Redis restarts with no data at all.
  assert.equal((await admin(a, 'PUT', '/plugins/talk', { body: wasm('chat'), query: 'config.version=4.0.0' })).status, 200);
  assert.equal(await activeVersion(a, 'talk'), '4.0.0');
  assert.equal(await activeVersion(b, 'talk'), '3.0.0');
  await redis.restart();
  // Bound: the 5 s reconcile plus Redis reconnects.
  const caught = await within('4.0.0 on node B after the outage', 8000, async () => (await activeVersion(b, 'talk')) === '4.0.0');
  console.log(`# change made during the outage reached node B ${caught.ms} ms after Redis returned`);
  const c = await start();
  assert.equal(await activeVersion(c, 'talk'), '4.0.0');
  assert.equal(a.proc.exitCode, null);
  assert.equal(b.proc.exitCode, null);
});
