// Plugins built against portico:plugin@0.1.0 and @0.2.0 keep working next to the SDK's 0.3.0
// ones; the imports 0.2.0 added (and 0.3.0 keeps) work end to end: connection state (gone after disconnect) and timers (firing,
// cancelled with their connection, surviving a hot swap, publishing on their own).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ADMIN_TOKEN, startPortico, pluginDir, call, next, eventually, wasm, deploy, clients, pluginInfo } from './fixture.mjs';

const fixture = (version) => resolve(`../host/tests/fixtures/echo-${version}.wasm`);
let node;
const { openAs, closeAll } = clients();
const open = (ns, sub) => openAs(node, ns, sub);

before(async () => {
  const dir = pluginDir(['chat', 'echo', 'probe']);
  copyFileSync(fixture('0.1.0'), join(dir, 'oldecho.wasm'));
  copyFileSync(fixture('0.2.0'), join(dir, 'echotwo.wasm'));
  node = await startPortico({ dir, args: ['--admin-token', ADMIN_TOKEN] });
});
after(async () => {
  closeAll();
  await node.stop();
});

async function metric(name, plugin) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{plugin="${plugin}"}`));
  return line ? Number(line.split(' ').pop()) : undefined;
}

test('0.1.0 and 0.2.0 components are served next to 0.3.0 plugins', async () => {
  const old = await open('/oldecho');
  const two = await open('/echotwo');
  const echo = await open('/echo');
  const chat = await open('/chat');
  const contracts = {};
  for (const name of ['oldecho', 'echotwo', 'echo', 'chat']) contracts[name] = (await pluginInfo(node, name)).contract;
  assert.deepEqual(contracts, { oldecho: '0.1.0', echotwo: '0.2.0', echo: '0.3.0', chat: '0.3.0' });
  assert.equal((await call(chat, 'join', { room: 'r' })).ok, true);
  for (const socket of [old, two, echo]) {
    // A burst (answered in one on-events call by 0.2.0 and 0.3.0 plugins), with an
    // attachment and a non-ASCII event name: every answer in order, unchanged.
    const sent = Array.from({ length: 20 }, (_, i) => ({ i, é: 'ü', bin: Buffer.from([i, 255, 0]) }));
    const acks = await Promise.all(sent.map((arg) => socket.timeout(5000).emitWithAck('fïle', arg)));
    assert.deepEqual(acks.map((a) => [a.i, a.é, Buffer.from(a.bin)]), sent.map((a) => [a.i, a.é, a.bin]));
    // Emits (no ack) work on every contract too.
    const back = next(socket, 'ping');
    socket.emit('ping', 'x');
    assert.deepEqual(await back, ['x']);
  }
  const plugins = (await (await fetch(`${node.url}/readyz`)).json()).plugins.sort();
  assert.deepEqual(plugins, ['chat', 'echo', 'echotwo', 'oldecho', 'probe']);
});

test('connection state is per connection and gone once it disconnects', async () => {
  const a = await open('/probe', 'ann');
  const b = await open('/probe', 'bob');
  assert.equal((await call(a, 'remember', { key: 'k', value: 'v1' })).ok, true);
  assert.equal((await call(a, 'recall', { key: 'k' })).value, 'v1');
  assert.equal((await call(b, 'recall', { key: 'k' })).value, null);
  const aId = a.id; // the client forgets its id once closed
  assert.equal((await call(b, 'recall', { key: 'k', socket: aId })).value, 'v1');
  a.close();
  // The server ends the connection when it notices the close; the test can only poll.
  const gone = await eventually('the server to end the connection', async () => {
    const ack = await call(b, 'recall', { key: 'k', socket: aId });
    return ack.ok === false && ack;
  });
  assert.equal(gone.code, 'state_error');
  const huge = await call(b, 'remember', { key: 'k', value: 'x'.repeat(70_000) });
  assert.equal(huge.code, 'state_error');
  assert.ok((await metric('portico_plugin_connection_state_refused_total', 'probe')) >= 1);
});

test('timers fire for their connection, and are cancelled when it disconnects', async () => {
  const a = await open('/probe', 'ann');
  const b = await open('/probe', 'bob');
  const setBefore = (await metric('portico_plugin_timers_set_total', 'probe')) ?? 0;
  const firedBefore = (await metric('portico_plugin_timers_fired_total', 'probe')) ?? 0;
  const reminder = next(a, 'reminder');
  assert.equal((await call(a, 'remind', { delay_ms: 50, text: 'hello' })).ok, true);
  assert.equal((await reminder)[0].text, 'hello');

  // b's timer is longer than a's: once b's fired, a's would have too, had it not been cancelled.
  assert.equal((await call(a, 'remind', { delay_ms: 200, text: 'never' })).ok, true);
  a.close();
  // The cancellation is seen only in a gauge: poll it.
  await eventually('a timer cancelled', async () => (await metric('portico_plugin_timers_pending', 'probe')) === 0);
  const later = next(b, 'reminder');
  assert.equal((await call(b, 'remind', { delay_ms: 400, text: 'later' })).ok, true);
  assert.equal((await later)[0].text, 'later');
  assert.equal(await metric('portico_plugin_timers_set_total', 'probe'), setBefore + 3);
  assert.equal(await metric('portico_plugin_timers_fired_total', 'probe'), firedBefore + 2);

  const cancelled = await call(b, 'remind', { delay_ms: 60_000, text: 'x' });
  assert.equal((await call(b, 'cancel', { id: cancelled.id })).cancelled, true);
  assert.equal((await call(b, 'cancel', { id: cancelled.id })).cancelled, false);
  const tooLong = await call(b, 'remind', { delay_ms: 90_000_000, text: 'x' });
  assert.equal(tooLong.code, 'timer_error');
});

test('a timer about no connection publishes to a channel', async () => {
  const b = await open('/probe', 'bob');
  assert.equal((await call(b, 'tune', null)).ok, true);
  const heard = next(b, 'announcement');
  assert.equal((await call(b, 'announce', { delay_ms: 30, channel: 'tune', text: 'hear ye' })).ok, true);
  assert.equal((await heard)[0].text, 'hear ye');
});

test('a timer survives a hot swap and fires into the new version', async () => {
  const c = await open('/probe', 'cat');
  const set = await call(c, 'remind', { delay_ms: 1500, text: 'after the swap' });
  assert.equal(set.ok, true);
  const fired = next(c, 'reminder', 10000);
  const res = await deploy(node, 'probe', wasm('probe'), 'config.version=2.0.0');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal((await call(c, 'recall', { key: 'none' })).v, '2.0.0');
  const [reminder] = await fired;
  assert.deepEqual(reminder, { text: 'after the swap', v: '2.0.0' });
});
