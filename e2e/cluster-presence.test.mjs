// Presence: who is in a channel, through chat's `who` (the `presence` import)
// and the admin API, on one node and across nodes; a killed node's members
// disappear once its heartbeat expires.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_TOKEN, call, eventually, admin, clients, nodes } from './fixture.mjs';
import { startRedis } from './redis.mjs';

/** Heartbeat TTL of the nodes here (sent every third of it). */
const NODE_TTL_MS = 3000;
/** A killed node's members are gone within the TTL plus this margin. */
const MARGIN_MS = 1500;

let redis;
const cluster = nodes({ plugins: ['chat'], args: ['--admin-token', ADMIN_TOKEN] });
const start = (id, { clustered = true } = {}) => cluster.start({
  env: { PORTICO_CLUSTER__NODE_ID: id, PORTICO_CLUSTER__NODE_TTL_MS: String(NODE_TTL_MS), ...(clustered ? { PORTICO_REDIS_URL: redis.url } : {}) },
});
const { openAs, closeAll } = clients();
const open = (node, sub) => openAs(node, '/chat', sub);
async function presence(node, channel) {
  const res = await admin(node, 'GET', `/plugins/chat/presence/${channel}`);
  assert.equal(res.status, 200);
  return res.body.members;
}
const who = async (socket, room) => {
  const ack = await call(socket, 'who', { room });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return ack.members;
};
const pairs = (members) => members.map((m) => `${m.subject}@${m.node}`).sort();

before(async () => {
  redis = await startRedis();
});
after(async () => {
  closeAll();
  await cluster.stopAll();
  await redis?.stop();
});

test('one node: presence follows join, leave and disconnect', async () => {
  const node = await start('solo', { clustered: false });
  const ann = await open(node, 'ann');
  const ben = await open(node, 'ben');
  await call(ann, 'join', { room: 'r' });
  await call(ben, 'join', { room: 'r' });
  assert.deepEqual(pairs(await who(ann, 'r')), ['ann@solo', 'ben@solo']);
  const ids = (await presence(node, 'r')).map((m) => m.socket).sort();
  assert.deepEqual(ids, [ann.id, ben.id].sort());
  await call(ann, 'leave', { room: 'r' });
  assert.deepEqual(pairs(await who(ben, 'r')), ['ben@solo']);
  ben.close();
  // The server drops a closed socket from presence when it notices the close: no event
  // reaches the test, so the state is polled.
  await eventually('a disconnected socket to leave presence', async () => (await presence(node, 'r')).length === 0, { timeout: 2000, every: 20 });
  assert.equal((await admin(node, 'GET', '/plugins/nope/presence/r')).status, 404);
});

test('presence lists members on both nodes, and drops a killed node within TTL + margin', async () => {
  const [a, b] = await Promise.all([start('node-a'), start('node-b')]);
  const alice = await open(a, 'alice');
  const bob = await open(b, 'bob');
  const carol = await open(b, 'carol');
  for (const s of [alice, bob, carol]) await call(s, 'join', { room: 'lobby' });
  const all = ['alice@node-a', 'bob@node-b', 'carol@node-b'];
  assert.deepEqual(pairs(await who(alice, 'lobby')), all);
  assert.deepEqual(pairs(await who(bob, 'lobby')), all);
  assert.deepEqual(pairs(await presence(a, 'lobby')), all);

  await call(carol, 'leave', { room: 'lobby' });
  assert.deepEqual(pairs(await presence(a, 'lobby')), ['alice@node-a', 'bob@node-b']);

  // Node B dies without a word: its members stay in Redis until its heartbeat expires.
  const killed = Date.now();
  b.proc.kill('SIGKILL');
  await new Promise((r) => b.proc.once('exit', r));
  // Nothing announces the expiry (it is a key's TTL in Redis): poll, bounded by TTL + margin.
  const members = await eventually(
    `bob to leave presence within ${NODE_TTL_MS + MARGIN_MS} ms of node B's death`,
    async () => { const m = pairs(await presence(a, 'lobby')); return !m.includes('bob@node-b') && m; },
    { timeout: NODE_TTL_MS + MARGIN_MS - (Date.now() - killed), every: 50 },
  );
  assert.deepEqual(members, ['alice@node-a']);
  console.log(`# node B's members dropped ${Date.now() - killed} ms after SIGKILL (TTL ${NODE_TTL_MS} ms)`);
  assert.deepEqual(pairs(await who(alice, 'lobby')), ['alice@node-a']);
});
