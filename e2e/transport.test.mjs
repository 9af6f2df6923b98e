// Socket.IO completeness end to end: each transport setup passes a chat round
// trip, rooms are per namespace, a plugin can send to one socket and
// disconnect with a reason, and CORS follows the config.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startPortico, pluginDir, tempFile, call, next, token, disconnected, clients } from './fixture.mjs';

let node;
let corsNode;
const { open, closeAll } = clients();

before(async () => {
  node = await startPortico({ dir: pluginDir(['chat', 'faulty'], { chat2: 'chat' }) });
  const config = tempFile('portico.toml', '[cors]\nallowed_origins = ["http://app.example"]\n');
  corsNode = await startPortico({ plugins: ['echo'], args: ['--config', config] });
});
after(async () => { closeAll(); await node.stop(); await corsNode.stop(); });

/** Alice and Bob join `room` on /chat with these client options; Alice's message reaches Bob. */
async function chatRoundTrip(opts, room) {
  const alice = await open(node.url, '/chat', { auth: { token: token({ sub: 'alice' }) }, ...opts });
  const bob = await open(node.url, '/chat', { auth: { token: token({ sub: 'bob' }) }, ...opts });
  assert.equal((await call(alice, 'join', { room })).ok, true);
  assert.equal((await call(bob, 'join', { room })).ok, true);
  const got = next(bob, 'message');
  assert.equal((await call(alice, 'message', { room, text: `via ${room}` })).ok, true);
  assert.deepEqual((await got)[0], { from: 'alice', room, text: `via ${room}` });
  return { alice, bob };
}

test('long-polling only: chat round trip', async () => {
  const { alice } = await chatRoundTrip({ transports: ['polling'], upgrade: false }, 'polling');
  assert.equal(alice.io.engine.transport.name, 'polling');
});

test('WebSocket only: chat round trip', async () => {
  const { alice } = await chatRoundTrip({ transports: ['websocket'] }, 'websocket');
  assert.equal(alice.io.engine.transport.name, 'websocket');
});

test('polling then upgrade to WebSocket: chat round trip after the upgrade', async () => {
  const opts = { transports: ['polling', 'websocket'] };
  const alice = await open(node.url, '/chat', { auth: { token: token({ sub: 'alice' }) }, ...opts });
  const bob = await open(node.url, '/chat', { auth: { token: token({ sub: 'bob' }) }, ...opts });
  for (const s of [alice, bob]) {
    if (s.io.engine.transport.name !== 'websocket') {
      await new Promise((ok) => s.io.engine.once('upgrade', ok));
    }
    assert.equal(s.io.engine.transport.name, 'websocket');
  }
  await call(alice, 'join', { room: 'upgraded' });
  await call(bob, 'join', { room: 'upgraded' });
  const got = next(bob, 'message');
  await call(alice, 'message', { room: 'upgraded', text: 'after upgrade' });
  assert.equal((await got)[0].text, 'after upgrade');
});

test('rooms are per namespace: the same room name in another namespace hears nothing', async () => {
  const alice = await open(node.url, '/chat', { auth: { token: token({ sub: 'alice' }) } });
  const carol = await open(node.url, '/chat', { auth: { token: token({ sub: 'carol' }) } });
  const dave = await open(node.url, '/chat2', { auth: { token: token({ sub: 'dave' }) } });
  for (const s of [alice, carol, dave]) await call(s, 'join', { room: 'shared' });
  const heardInChat2 = [];
  dave.on('message', (m) => heardInChat2.push(m));
  const atCarol = next(carol, 'message');
  await call(alice, 'message', { room: 'shared', text: 'only /chat' });
  await atCarol;
  // Dave's own round trip in /chat2 proves /chat's message would have reached him by now.
  const erin = await open(node.url, '/chat2', { auth: { token: token({ sub: 'erin' }) } });
  await call(erin, 'join', { room: 'shared' });
  const atDave = next(dave, 'message');
  await call(erin, 'message', { room: 'shared', text: 'only /chat2' });
  await atDave;
  assert.deepEqual(heardInChat2.map((m) => m.text), ['only /chat2']);
});

test('send-to reaches exactly one socket of the namespace', async () => {
  const a = await open(node.url, '/faulty');
  const b = await open(node.url, '/faulty');
  const c = await open(node.url, '/faulty');
  const { id } = await call(b, 'whoami');
  assert.equal(id, b.id);
  let others = 0;
  a.on('dm', () => { others += 1; });
  c.on('dm', () => { others += 1; });
  const got = next(b, 'dm');
  assert.deepEqual(await call(a, 'send-to', { socket: b.id, event: 'dm', data: { text: 'psst' } }), { ok: true });
  assert.deepEqual((await got)[0], { text: 'psst' });
  // Round trips on a and c after b got it: a stray copy would have arrived before their acks.
  await call(a, 'ok');
  await call(c, 'ok');
  assert.equal(others, 0);
  // An unknown socket id is skipped; the sender still gets its ack.
  assert.deepEqual(await call(a, 'send-to', { socket: 'nobody', event: 'dm', data: 1 }), { ok: true });
});

test('the disconnect action closes the socket with the reason the client sees', async () => {
  const s = await open(node.url, '/faulty');
  const gone = disconnected(s);
  s.emit('kick', { reason: 'bye now' });
  const { reason, told } = await gone;
  assert.equal(reason, 'io server disconnect');
  assert.deepEqual(told, { reason: 'bye now' });
});

/** The polling handshake with an Origin header; resolves with the CORS header. */
function handshakeOrigin(url, origin) {
  return new Promise((ok, fail) => {
    const req = http.get(`${url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } }, (res) => {
      res.resume();
      res.on('end', () => ok({ status: res.statusCode, allow: res.headers['access-control-allow-origin'] ?? null, credentials: res.headers['access-control-allow-credentials'] ?? null }));
    });
    req.on('error', fail);
  });
}

test('CORS: none by default (same origin only); configured origins are allowed with credentials', async () => {
  assert.deepEqual(await handshakeOrigin(node.url, 'http://app.example'), { status: 200, allow: null, credentials: null });
  assert.deepEqual(await handshakeOrigin(corsNode.url, 'http://app.example'), { status: 200, allow: 'http://app.example', credentials: 'true' });
  assert.equal((await handshakeOrigin(corsNode.url, 'http://evil.example')).allow, null);
});
