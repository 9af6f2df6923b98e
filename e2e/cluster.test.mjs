// Several nodes over one Redis: rooms and KV cross nodes, and a Redis
// restart neither crashes a node nor stops local delivery.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPortico, connect, call, next, token } from './fixture.mjs';
import { startRedis } from './redis.mjs';

let redis, a, b;
const sockets = [];
const open = async (node, ns, sub) => {
  const s = await connect(node.url, ns, { auth: { token: token({ sub }) } });
  sockets.push(s);
  return s;
};

before(async () => {
  redis = await startRedis();
  const env = { PORTICO_REDIS_URL: redis.url };
  [a, b] = await Promise.all([
    startPortico({ plugins: ['chat', 'counter', 'faulty'], env }),
    startPortico({ plugins: ['chat', 'counter', 'faulty'], env }),
  ]);
});
after(async () => {
  sockets.forEach((s) => s.close());
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
});

/** Resolves once `receiver` gets a message sent by `sender` in `room` (retried: subscriptions may still be settling). */
async function crossDelivery(sender, receiver, room, text, withinMs) {
  const deadline = Date.now() + withinMs;
  for (let i = 0; Date.now() < deadline; i++) {
    const got = next(receiver, 'message', 400).catch(() => null);
    await call(sender, 'message', { room, text: `${text}-${i}` });
    const msg = await got;
    if (msg) return msg[0];
  }
  throw new Error(`no cross-node delivery within ${withinMs} ms`);
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
  const crossShout = async (sender, receiver, text, withinMs) => {
    const deadline = Date.now() + withinMs;
    for (let i = 0; Date.now() < deadline; i++) {
      const got = next(receiver, 'shout', 400).catch(() => null);
      await shout(sender, `${text}-${i}`);
      const msg = await got;
      if (msg) return msg[0];
    }
    throw new Error(`no cross-node delivery within ${withinMs} ms`);
  };
  await crossShout(b1, a1, 'before', 5000);

  await redis.stop();
  // During the outage, a message on node A still reaches the other client on node A.
  for (let i = 0; i < 3; i++) {
    const local = next(a2, 'shout', 5000);
    assert.equal((await shout(a1, `during-${i}`)).ok, true);
    assert.equal((await local)[0].text, `during-${i}`);
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
