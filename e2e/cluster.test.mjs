// Several nodes over one Redis: rooms and KV cross nodes, and a Redis
// restart neither crashes a node nor stops local delivery.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPortico, call, next, nextWhere, token, deliveredAcross, clients } from './fixture.mjs';
import { startRedis } from './redis.mjs';
import { openStream } from './sse-client.mjs';

const API_KEY = 'cluster-publish-key';
let redis, a, b, c;
const streams = [];
const { openAs: open, closeAll } = clients();

before(async () => {
  redis = await startRedis();
  const env = { PORTICO_REDIS_URL: redis.url, PORTICO_API_KEY: API_KEY };
  [a, b, c] = await Promise.all([
    startPortico({ plugins: ['chat', 'counter', 'faulty'], env }),
    startPortico({ plugins: ['chat', 'counter', 'faulty'], env }),
    startPortico({ plugins: ['chat'], env }),
  ]);
});
after(async () => {
  closeAll();
  streams.forEach((s) => s.close());
  await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
  await redis?.stop();
});

/** Resolves once `receiver` gets a message sent by `sender` in `room` (retried: subscriptions may still be settling). */
async function crossDelivery(sender, receiver, room, text, withinMs) {
  const send = (i) => call(sender, 'message', { room, text: `${text}-${i}` });
  return deliveredAcross(receiver, 'message', send, withinMs);
}

test('a room message from a client on node B reaches a client on node A', async () => {
  const alice = await open(a, '/chat', 'alice');
  const bob = await open(b, '/chat', 'bob');
  await call(alice, 'join', { room: 'x' });
  await call(bob, 'join', { room: 'x' });
  const got = next(alice, 'message');
  assert.equal((await call(bob, 'message', { room: 'x', text: 'across' })).ok, true);
  assert.deepEqual((await got)[0], { from: 'bob', room: 'x', text: 'across' });
});

const sse = async (node, path, headers = {}) => {
  const s = await openStream(node.url, path, { headers });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  streams.push(s);
  return s;
};

async function publish(node, channel, data) {
  const res = await fetch(`${node.url}/api/v1/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ plugin: 'chat', channel, event: 'item', data }),
  });
  assert.equal(res.status, 200, await res.text());
}

test('a chat message from node B reaches Socket.IO on node A and SSE on node C', async () => {
  const alice = await open(a, '/chat', 'alice2');
  const bob = await open(b, '/chat', 'bob2');
  await call(alice, 'join', { room: 'y' });
  await call(bob, 'join', { room: 'y' });
  const reader = await sse(c, `/sse/chat?channel=y&access_token=${token({ sub: 'carol' })}`);
  const got = next(alice, 'message');
  await call(bob, 'message', { room: 'y', text: 'to every node' });
  assert.equal((await got)[0].text, 'to every node');
  const frame = await reader.waitFor((f) => f.event === 'message');
  assert.deepEqual(JSON.parse(frame.data), { from: 'bob2', room: 'y', text: 'to every node' });
  assert.match(frame.id, /^\d+-\d+$/);
});

test('an SSE client moved from node A to node B resumes with Last-Event-ID: no gap, no duplicate', async () => {
  const path = `/sse/chat?channel=moving&access_token=${token({ sub: 'dora' })}`;
  const first = await sse(a, path);
  for (let i = 1; i <= 25; i++) await publish(a, 'moving', { n: i });
  await first.waitFor((f) => f.event === 'item' && JSON.parse(f.data).n === 25);
  const seen = first.frames.filter((f) => f.event === 'item');
  assert.deepEqual(seen.map((f) => JSON.parse(f.data).n), Array.from({ length: 25 }, (_, i) => i + 1));
  first.close();

  // Missed while away, published through both nodes.
  for (let i = 26; i <= 50; i++) await publish(i % 2 ? a : b, 'moving', { n: i });
  const moved = await sse(b, path, { 'last-event-id': seen.at(-1).id });
  await publish(b, 'moving', { n: 'end' });
  await moved.waitFor((f) => f.event === 'item' && JSON.parse(f.data).n === 'end');
  const resumed = moved.frames.filter((f) => f.event === 'item').map((f) => JSON.parse(f.data).n);
  assert.deepEqual(resumed, [...Array.from({ length: 25 }, (_, i) => i + 26), 'end']);
  assert.ok(!moved.frames.some((f) => f.event === 'resync'), 'no resync: node B holds the history');
});

test('kv written through node A is read through node B', async () => {
  const onA = await open(a, '/counter', 'u1');
  const onB = await open(b, '/counter', 'u2');
  const name = `c${Date.now()}`;
  await call(onA, 'hit', { name });
  await call(onA, 'hit', { name });
  const read = await call(onB, 'get', { name });
  assert.deepEqual([read.ok, read.value], [true, 2]);
});

test('Redis restart: local delivery continues, cross-node resumes within 5 s, no node crashes', async () => {
  // `faulty` rooms involve no KV, so what is tested is the delivery path alone
  // (chat keeps membership in Redis and answers kv_unavailable during an outage).
  const a1 = await open(a, '/faulty', 'a1');
  const a2 = await open(a, '/faulty', 'a2');
  const b1 = await open(b, '/faulty', 'b1');
  for (const s of [a1, a2, b1]) assert.equal((await call(s, 'join', 'r')).ok, true);
  const shout = (s, text) => call(s, 'shout', 'r', text);
  const crossShout = (sender, receiver, text, withinMs) =>
    deliveredAcross(receiver, 'shout', (i) => shout(sender, `${text}-${i}`), withinMs);

  await crossShout(b1, a1, 'before', 5000);

  await redis.stop();
  // During the outage, a message on node A still reaches the other client on node A.
  for (let i = 0; i < 3; i++) {
    // a2 may still be receiving the earlier `before-*` shouts: wait for this one.
    const local = nextWhere(a2, 'shout', (m) => m.text === `during-${i}`, 5000);
    assert.equal((await shout(a1, `during-${i}`)).ok, true);
    await local;
  }

  await redis.restart();
  const back = Date.now();
  const msg = await crossShout(b1, a1, 'after', 5000);
  assert.match(msg.text, /^after-/);
  assert.ok(Date.now() - back <= 5000);
  assert.equal(a.proc.exitCode, null, 'node A is alive');
  assert.equal(b.proc.exitCode, null, 'node B is alive');
  // And chat, whose state is in Redis, works again.
  const c1 = await open(a, '/chat', 'c1');
  const c2 = await open(b, '/chat', 'c2');
  await call(c1, 'join', { room: 'again' });
  await call(c2, 'join', { room: 'again' });
  const text = (await crossDelivery(c2, c1, 'again', 'hello', 5000)).text;
  assert.match(text, /^hello-/);
});
