// Foundation end to end: the real binary, the example plugins, the official client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPortico, connectError, call, next, token, clients } from './fixture.mjs';

let node;
const { open, closeAll } = clients();

before(async () => { node = await startPortico({ plugins: ['chat', 'echo', 'faulty'] }); });
after(async () => { closeAll(); await node.stop(); });

test('two clients chat in a room: the other gets the message, the sender only its ack', async () => {
  const alice = await open(node.url, '/chat', { auth: { token: token({ sub: 'alice' }) } });
  const bob = await open(node.url, '/chat', { auth: { token: token({ sub: 'bob' }) } });
  assert.equal((await call(alice, 'join', { room: 'lobby' })).ok, true);
  assert.equal((await call(bob, 'join', { room: 'lobby' })).ok, true);

  const aliceGot = [];
  alice.on('message', (m) => aliceGot.push(m));
  const received = next(bob, 'message');
  const ack = await call(alice, 'message', { room: 'lobby', text: 'hello bob' });
  assert.equal(ack.ok, true);
  const [msg] = await received;
  assert.deepEqual(msg, { from: 'alice', room: 'lobby', text: 'hello bob' });

  // The nickname replaces the subject as `from`.
  assert.equal((await call(alice, 'nick', { name: 'Al' })).ok, true);
  const second = next(bob, 'message');
  await call(alice, 'message', { room: 'lobby', text: 'again' });
  assert.equal((await second)[0].from, 'Al');
  // Once alice has bob's message, any echo of her own two would have arrived before it.
  const atAlice = next(alice, 'message');
  await call(bob, 'message', { room: 'lobby', text: 'hi' });
  assert.deepEqual((await atAlice)[0], { from: 'bob', room: 'lobby', text: 'hi' });
  assert.deepEqual(aliceGot.map((m) => m.text), ['hi'], 'alice receives bob\'s message and none of her own');
});

test('the sender does not receive its own publication', async () => {
  const a = await open(node.url, '/chat', { auth: { token: token({ sub: 'a' }) } });
  const b = await open(node.url, '/chat', { auth: { token: token({ sub: 'b' }) } });
  await call(a, 'join', { room: 'solo' });
  await call(b, 'join', { room: 'solo' });
  const own = [];
  a.on('message', (m) => own.push(m));
  const atB = next(b, 'message');
  await call(a, 'message', { room: 'solo', text: 'one' });
  await atB;
  // B answers; once A has B's message, anything A would get of its own has arrived.
  const atA = next(a, 'message');
  await call(b, 'message', { room: 'solo', text: 'two' });
  await atA;
  assert.deepEqual(own.map((m) => m.text), ['two']);
});

test('a non-member gets not_member, malformed args get bad_request, unknown events unknown_event', async () => {
  const s = await open(node.url, '/chat');
  const notMember = await call(s, 'message', { room: 'elsewhere', text: 'hi' });
  assert.equal(notMember.ok, false);
  assert.equal(notMember.code, 'not_member');
  assert.equal(typeof notMember.message, 'string');
  const bad = await call(s, 'join', { nope: 1 });
  assert.deepEqual([bad.ok, bad.code], [false, 'bad_request']);
  const none = await call(s, 'join');
  assert.deepEqual([none.ok, none.code], [false, 'bad_request']);
  const unknown = await call(s, 'dance', {});
  assert.deepEqual([unknown.ok, unknown.code], [false, 'unknown_event']);
});

test('chat refuses a connection without a subject', async () => {
  const err = await connectError(node.url, '/chat', { auth: { token: token({ sub: undefined }) } });
  assert.match(err.message, /^unauthorized: /);
});

test('a connection without a token is refused with token_missing', async () => {
  const err = await connectError(node.url, '/chat', { auth: {} });
  assert.match(err.message, /^token_missing: /);
});

test('echo acks with the same args, binary included, and emits back without an ack', async () => {
  const s = await open(node.url, '/echo');
  const bin = Buffer.from([0, 1, 2, 250, 255]);
  const args = await s.timeout(5000).emitWithAck('anything', { n: 1, file: bin }, 'two', [3]);
  assert.equal(args.n, 1);
  assert.ok(Buffer.isBuffer(args.file) || args.file instanceof ArrayBuffer);
  assert.deepEqual(Buffer.from(args.file), bin);

  const echoed = next(s, 'ping');
  s.emit('ping', 'x', { y: [1, 2] }, bin);
  const [a, b, c] = await echoed;
  assert.equal(a, 'x');
  assert.deepEqual(b, { y: [1, 2] });
  assert.deepEqual(Buffer.from(c), bin);
});

test('an unknown namespace is refused with a clear error', async () => {
  const err = await connectError(node.url, '/nowhere');
  assert.match(err.message, /invalid namespace/i);
  const root = await connectError(node.url, '/');
  assert.match(root.message, /invalid namespace/i);
});

test('plugin failures reach the client as error acks and the plugin keeps serving', async () => {
  const s = await open(node.url, '/faulty');
  const panic = await call(s, 'panic');
  assert.deepEqual([panic.ok, panic.code], [false, 'plugin_error']);
  const timeout = await call(s, 'loop');
  assert.deepEqual([timeout.ok, timeout.code], [false, 'plugin_timeout']);
  const oom = await call(s, 'alloc');
  assert.deepEqual([oom.ok, oom.code], [false, 'plugin_memory_limit']);
  const own = await call(s, 'error');
  assert.deepEqual([own.ok, own.code], [false, 'teapot']);
  assert.equal((await call(s, 'ok')).ok, true);
  // std's HashMap works inside a plugin (its seed import is provided).
  assert.deepEqual(await call(s, 'hashmap'), { ok: true, len: 1 });
  // Another plugin is untouched.
  const e = await open(node.url, '/echo');
  assert.deepEqual(await call(e, 'x', 1), 1);
});
