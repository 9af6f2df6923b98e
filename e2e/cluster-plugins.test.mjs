// Plugins across nodes: an upload, rollback or removal through the admin API
// of one node reaches every node; a node started later serves the current set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, call, disconnected, wasm, admin, deploy, rollback, clients, nodes } from './fixture.mjs';
import { startRedis } from './redis.mjs';

const CACHE = mkdtempSync(join(tmpdir(), 'portico-cluster-plugins-cache-'));
/** How long a change may take to reach another node. */
const PROPAGATION_MS = 3000;

let redis;
const cluster = nodes({ plugins: ['chat'], args: ['--admin-token', ADMIN_TOKEN, '--cache-dir', CACHE] });
const start = () => cluster.start({ env: { PORTICO_REDIS_URL: redis.url } });
const { openAs: open, closeAll } = clients();

/**
 * Resolves with how long `node` took to log that it applied `version` of `plugin` from
 * the cluster (it logs once the change serves), failing after `ms`.
 */
async function applied(node, plugin, version, ms) {
  const t0 = Date.now();
  const v = version.replaceAll('.', '\\.');
  await node.logged(new RegExp(`applied a plugin change from the cluster plugin="${plugin}" .*version="${v}"`), ms);
  return Date.now() - t0;
}

/** The version `node` serves of plugin `name`, through its admin API (null if it has none). */
const activeVersion = async (node, name) => {
  const res = await admin(node, 'GET', `/plugins/${name}`);
  return res.status === 200 ? res.body.version : null;
};

before(async () => {
  redis = await startRedis();
});
after(async () => {
  closeAll();
  await cluster.stopAll();
  await redis?.stop();
});

test('a plugin pushed to node A serves on node B within 3 s, and on a node started later', async () => {
  const [a, b] = await Promise.all([start(), start()]);
  const pushed = await deploy(a, 'echo', wasm('echo'));
  assert.equal(pushed.status, 201);
  const ms = await applied(b, 'echo', pushed.body.version, PROPAGATION_MS);
  console.log(`# upload reached node B in ${ms} ms`);
  const socket = await open(b, '/echo');
  assert.deepEqual(await call(socket, 'echo', 'hi'), 'hi');

  const c = await start();
  const late = await open(c, '/echo');
  assert.deepEqual(await call(late, 'echo', 'late'), 'late');
  assert.equal((await admin(c, 'GET', '/plugins/echo')).body.sha256, (await admin(a, 'GET', '/plugins/echo')).body.sha256);
});

test('a new version, a rollback and a removal on one node reach the others', async () => {
  const [a, b] = await Promise.all([start(), start()]);
  assert.equal(await activeVersion(b, 'chat'), '0.1.0');
  assert.equal((await deploy(a, 'chat', wasm('chat'), 'config.version=2.0.0')).status, 200);
  const up = await applied(b, 'chat', '2.0.0', PROPAGATION_MS);
  console.log(`# new version reached node B in ${up} ms`);
  assert.equal(await activeVersion(b, 'chat'), '2.0.0');

  // Rolled back through node B this time: node A follows.
  assert.equal((await rollback(b, 'chat')).status, 200);
  const back = await applied(a, 'chat', '0.1.0', PROPAGATION_MS);
  console.log(`# rollback reached node A in ${back} ms`);
  assert.equal(await activeVersion(a, 'chat'), '0.1.0');

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
  assert.equal((await deploy(a, 'talk', wasm('chat'), 'config.version=3.0.0')).status, 201);
  await applied(b, 'talk', '3.0.0', PROPAGATION_MS);
  assert.equal(await activeVersion(b, 'talk'), '3.0.0');

  await redis.stop();
  // The change serves on node A at once; Redis restarts with no data at all.
  assert.equal((await deploy(a, 'talk', wasm('chat'), 'config.version=4.0.0')).status, 200);
  assert.equal(await activeVersion(a, 'talk'), '4.0.0');
  assert.equal(await activeVersion(b, 'talk'), '3.0.0');
  await redis.restart();
  // Bound: the 5 s reconcile plus Redis reconnects.
  const caught = await applied(b, 'talk', '4.0.0', 8000);
  console.log(`# change made during the outage reached node B ${caught} ms after Redis returned`);
  assert.equal(await activeVersion(b, 'talk'), '4.0.0');
  const c = await start();
  assert.equal(await activeVersion(c, 'talk'), '4.0.0');
  assert.equal(a.proc.exitCode, null);
  assert.equal(b.proc.exitCode, null);
});
