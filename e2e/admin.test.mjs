// Admin API end to end: hot swap under load, bad uploads, rollback, removal,
// restart from the data directory, canary auto-rollback, and the CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, PLUGIN_DIR, ADMIN_TOKEN as ADMIN, startPortico, pluginDir, connectError, call, next, token, wasm, admin, deploy, rollback, promote, pluginInfo, clients, nodes, signal } from './fixture.mjs';

// One compiled-artifact cache for every node of this file: starts stay fast.
const CACHE = mkdtempSync(join(tmpdir(), 'portico-admin-cache-'));

const { start, stopAll } = nodes({
  plugins: ['chat'],
  // These tests load nodes on purpose: the default per-socket rate limit is not what they test.
  env: { PORTICO_THROTTLE__EVENTS_PER_SEC: '0' },
  args: ['--admin-token', ADMIN, '--cache-dir', CACHE],
});
const { openAs: open, closeAll } = clients();
after(async () => {
  closeAll();
  await stopAll();
});

test('replacing chat under load: no lost or failed ack, nobody disconnected, new events on the new version', async () => {
  const node = await start();
  const clients = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => open(node, '/chat', `user${i}`)));
  let disconnects = 0;
  clients.forEach((c) => c.on('disconnect', () => { disconnects += 1; }));
  for (const c of clients) assert.equal((await call(c, 'join', { room: 'load' })).ok, true);
  assert.equal((await pluginInfo(node, 'chat')).connections, 6);

  let swapped = false;
  let stop = false;
  const failures = [];
  const afterSwap = [];
  let sent = 0;
  let acked = 0;
  // The loops say when there is enough load (a promise each, not a poll of the counters).
  const loadBefore = signal('some load before the swap');
  let loadAfter = null;
  const loops = clients.map(async (c, i) => {
    let n = 0;
    while (!stop) {
      const sentAfterSwap = swapped;
      sent += 1;
      try {
        const ack = await call(c, 'nick', { name: `u${i}-${n++}` });
        acked += 1;
        if (acked > 200) loadBefore.resolve();
        if (ack.ok !== true) failures.push(ack);
        if (sentAfterSwap) afterSwap.push(ack.v);
        if (afterSwap.length > 200) loadAfter.resolve();
      } catch (err) {
        failures.push(String(err));
      }
    }
  });
  try {
    await loadBefore.promise;
    const res = await deploy(node, 'chat', wasm('chat'), 'config.version=2.0.0');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.version, '2.0.0');
    assert.equal(res.body.revision, 2);
    loadAfter = signal('load after the swap');
    swapped = true;
    await loadAfter.promise;
  } finally {
    // Also when a wait fails: the loops must not outlive the test.
    stop = true;
    await Promise.all(loops);
  }

  assert.deepEqual(failures, []);
  assert.equal(acked, sent, 'every event was acked');
  assert.equal(disconnects, 0);
  assert.ok(clients.every((c) => c.connected));
  assert.deepEqual([...new Set(afterSwap)], ['2.0.0'], 'events sent after the swap are answered by the new version');
  const info = await pluginInfo(node, 'chat');
  assert.equal(info.connections, 6);
  assert.ok(info.counters.events > 200, JSON.stringify(info.counters));
  assert.equal(typeof info.counters.p99_us, 'number');
  // Room state (kv) survives the swap: members can still post.
  assert.equal((await call(clients[0], 'message', { room: 'load', text: 'still here' })).ok, true);
});

test('every bad upload is refused with a precise reason and the old version keeps serving', async () => {
  // Room for the chat plugin (~400 KB), not for the 700 KB body below.
  const node = await start({ env: { PORTICO_RUNTIME__MAX_PLUGIN_BYTES: '600000' } });
  const s = await open(node, '/chat');
  const serving = async () => {
    assert.equal((await call(s, 'nick', { name: 'x' })).v, '0.1.0');
    const p = await pluginInfo(node, 'chat');
    assert.deepEqual([p.revision, p.version], [1, '0.1.0']);
  };
  const cases = [
    ['random bytes', randomBytes(4096), '', 400, 'not_a_component'],
    ['a core wasm module', Buffer.from('0061736d01000000', 'hex'), '', 400, 'not_a_component'],
    ['a component for another world (empty component)', Buffer.from('0061736d0d000100', 'hex'), '', 422, 'wrong_world'],
    ['describe() traps', wasm('faulty'), 'config.describe=panic', 422, 'describe_failed'],
    ['describe() loops', wasm('faulty'), 'config.describe=loop', 422, 'describe_failed'],
    ['an oversized body', randomBytes(700000), '', 413, 'plugin_too_large'],
    ['an unknown parameter', wasm('chat'), 'timeout=5', 400, 'bad_request'],
  ];
  for (const [what, bytes, query, status, code] of cases) {
    const res = await deploy(node, 'chat', bytes, query);
    assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, code, what);
    assert.equal(typeof res.body.error.message, 'string');
    await serving();
  }
  const form = await admin(node, 'PUT', '/plugins/chat', { body: wasm('chat'), type: 'application/x-www-form-urlencoded' });
  assert.deepEqual([form.status, form.body.error.code], [415, 'unsupported_media_type']);

  const anonymous = await admin(node, 'PUT', '/plugins/chat', { body: wasm('chat'), auth: null, query: 'config.version=6.6.6' });
  assert.deepEqual([anonymous.status, anonymous.body.error.code], [401, 'admin_token_missing']);
  const wrong = await admin(node, 'PUT', '/plugins/chat', { body: wasm('chat'), auth: 'not-the-token', query: 'config.version=6.6.6' });
  assert.deepEqual([wrong.status, wrong.body.error.code], [403, 'admin_token_invalid']);
  for (const auth of [null, 'not-the-token']) {
    const list = await admin(node, 'GET', '/plugins', { auth });
    assert.ok(!('plugins' in list.body), 'no data without the token');
  }
  await serving();
  assert.equal((await admin(node, 'GET', '/plugins/chat/versions')).body.revisions.length, 1);
  assert.ok(s.connected);
});

test('without an admin token the admin API is disabled', async () => {
  const node = await startPortico({ plugins: ['echo'], args: ['--cache-dir', CACHE] });
  try {
    const res = await admin(node, 'GET', '/plugins');
    assert.deepEqual([res.status, res.body.error.code], [404, 'admin_disabled']);
  } finally {
    await node.stop();
  }
});

test('rollback restores the previous behaviour, or a named revision', async () => {
  const node = await start();
  const s = await open(node, '/chat');
  assert.equal((await deploy(node, 'chat', wasm('chat'), 'config.version=2.0.0')).status, 200);
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '2.0.0');

  const back = await rollback(node, 'chat');
  assert.equal(back.status, 200);
  assert.deepEqual([back.body.revision, back.body.version], [1, '0.1.0']);
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '0.1.0');

  const named = await rollback(node, 'chat', '2.0.0');
  assert.deepEqual([named.status, named.body.revision], [200, 2]);
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '2.0.0');
  const byId = await rollback(node, 'chat', 1);
  assert.equal(byId.body.version, '0.1.0');
  const none = await rollback(node, 'chat', '9.9.9');
  assert.deepEqual([none.status, none.body.error.code], [404, 'revision_not_found']);
  const versions = (await admin(node, 'GET', '/plugins/chat/versions')).body.revisions;
  assert.deepEqual(versions.map((r) => [r.revision, r.version, r.active]), [[1, '0.1.0', true], [2, '2.0.0', false]]);
  const events = (await pluginInfo(node, 'chat')).events.map((e) => e.kind);
  assert.deepEqual(events, ['deployed', 'deployed', 'rolled_back', 'rolled_back', 'rolled_back']);
  assert.ok(s.connected);

  // History is bounded: ten revisions are kept, the active one always among them.
  for (let i = 3; i <= 12; i++) assert.equal((await deploy(node, 'chat', wasm('chat'), `config.version=${i}.0.0`)).status, 200);
  const kept = (await admin(node, 'GET', '/plugins/chat/versions')).body.revisions;
  assert.deepEqual(kept.map((r) => r.revision), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.equal(kept.at(-1).active, true);
  const evicted = await rollback(node, 'chat', 1);
  assert.equal(evicted.status, 404);
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '12.0.0');
});

test('delete disconnects clients with plugin_removed; a new name mounts live', async () => {
  const node = await start({ plugins: ['echo'] });
  const s = await open(node, '/echo');
  const told = next(s, 'portico:disconnect');
  const gone = next(s, 'disconnect');
  // An SSE reader of the plugin too: its stream must end, not hang.
  const sse = await fetch(`${node.url}/sse/echo?channel=x&access_token=${token()}`);
  assert.equal(sse.status, 200);
  const reader = sse.body.getReader();
  await reader.read(); // the retry hint: the stream is live
  const ended = (async () => { for (;;) { const { done } = await reader.read(); if (done) return true; } })();
  const res = await admin(node, 'DELETE', '/plugins/echo');
  assert.deepEqual([res.status, res.body.disconnected], [200, 1]);
  assert.equal(await ended, true, 'the SSE stream ended');
  assert.deepEqual((await told)[0], { reason: 'plugin_removed' });
  assert.equal((await gone)[0], 'io server disconnect');
  const refused = await connectError(node.url, '/echo', { auth: { token: token() } });
  assert.match(refused.message, /Invalid namespace/);
  assert.equal((await admin(node, 'DELETE', '/plugins/echo')).status, 404);

  // Upload under a new name: a new namespace, served at once.
  const created = await deploy(node, 'shout', wasm('echo'));
  assert.deepEqual([created.status, created.body.mount], [201, '/shout']);
  const t = await open(node, '/shout');
  assert.deepEqual(await call(t, 'hi', { x: 1 }), { x: 1 });
  // And the removed name can come back.
  assert.equal((await deploy(node, 'echo', wasm('echo'))).status, 201);
  const u = await open(node, '/echo');
  assert.deepEqual(await call(u, 'hi', 2), 2);
});

test('a restart with the same data directory brings back exactly the active set', async () => {
  const data = mkdtempSync(join(tmpdir(), 'portico-data-'));
  const dir = pluginDir(['chat', 'echo']);
  const first = await start({ dir, args: ['--data-dir', data] });
  assert.equal((await deploy(first, 'chat', wasm('chat'), 'config.version=2.0.0')).status, 200);
  assert.equal((await deploy(first, 'chat', wasm('chat'), 'config.version=3.0.0')).status, 200);
  assert.equal((await rollback(first, 'chat')).body.version, '2.0.0');
  assert.equal((await deploy(first, 'loud', wasm('echo'))).status, 201);
  assert.equal((await admin(first, 'DELETE', '/plugins/echo')).status, 200);
  await first.stop();

  const second = await start({ dir, args: ['--data-dir', data] });
  const list = (await admin(second, 'GET', '/plugins')).body.plugins;
  assert.deepEqual(list.map((p) => [p.name, p.revision, p.version]), [['chat', 2, '2.0.0'], ['loud', 1, '0.1.0']]);
  const s = await open(second, '/chat');
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '2.0.0');
  const l = await open(second, '/loud');
  assert.deepEqual(await call(l, 'x', 'y'), 'y');
  // echo was removed through the API: its --plugins copy stays unloaded.
  await connectError(second.url, '/echo', { auth: { token: token() } });
  // The history came back too.
  assert.equal((await rollback(second, 'chat', '3.0.0')).body.version, '3.0.0');
  assert.match(second.logs(), /restored the plugin set/);
});

test('a failing canary is rolled back automatically; a good one is promoted', async () => {
  const node = await start({
    plugins: ['echo', 'chat'],
    env: { PORTICO_CANARY__MIN_CALLS: '4', PORTICO_CANARY__MAX_ERROR_RATE: '0.2', PORTICO_CANARY__CHECK_INTERVAL_MS: '50' },
  });
  // The "new version" of echo traps on `panic` (faulty); echo answers it.
  const res = await deploy(node, 'echo', wasm('faulty'), 'canary=50');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual([res.body.revision, res.body.canary.revision, res.body.canary.percent], [1, 2, 50]);
  const clients = [];
  for (const sub of ['a', 'b', 'c', 'd']) clients.push(await open(node, '/echo', sub));
  assert.equal((await pluginInfo(node, 'echo')).canary.connections, 2);

  const answers = await Promise.all(clients.map((c) => call(c, 'panic', 'p')));
  const onCanary = answers.filter((a) => a?.code === 'plugin_error').length;
  assert.equal(onCanary, 2, JSON.stringify(answers));
  // The watcher judges the canary every 50 ms once it has MIN_CALLS calls: keep calling
  // until the node logs the rollback (it logs once the rollback is done).
  const rolledBack = node.logged(/canary rolled back automatically/);
  let judged = false;
  rolledBack.then(() => { judged = true; }, () => { judged = true; });
  while (!judged) await Promise.all(clients.map((c) => call(c, 'panic', 'p')));
  await rolledBack;
  const info = await pluginInfo(node, 'echo');
  assert.equal(info.canary, null, JSON.stringify(info));
  const outcome = info.events.find((e) => e.kind === 'canary_rolled_back');
  assert.ok(outcome, JSON.stringify(info.events));
  assert.equal(outcome.revision, 2);
  assert.match(outcome.message, /calls failed/);
  // Everyone is back on echo, still connected.
  for (const c of clients) assert.equal(await call(c, 'panic', 'p'), 'p');

  // A good canary, promoted: every connection moves to it.
  const chat = await deploy(node, 'chat', wasm('chat'), 'canary=50&config.version=2.0.0');
  assert.equal(chat.status, 200);
  const users = [];
  for (const sub of ['a', 'b']) users.push(await open(node, '/chat', sub));
  const before = await Promise.all(users.map((u) => call(u, 'nick', { name: 'n' })));
  assert.deepEqual(before.map((a) => a.v).sort(), ['0.1.0', '2.0.0']);
  const promoted = await promote(node, 'chat');
  assert.deepEqual([promoted.status, promoted.body.version, promoted.body.canary], [200, '2.0.0', null]);
  const afterPromote = await Promise.all(users.map((u) => call(u, 'nick', { name: 'n' })));
  assert.deepEqual(afterPromote.map((a) => a.v), ['2.0.0', '2.0.0']);
  const again = await promote(node, 'chat');
  assert.deepEqual([again.status, again.body.error.code], [409, 'no_canary']);
  const nocanary = await deploy(node, 'fresh', wasm('echo'), 'canary=10');
  assert.deepEqual([nocanary.status, nocanary.body.error.code], [409, 'canary_needs_active']);
});

/** Run the CLI; resolves with { code, stdout, stderr }. */
function cli(args, env = {}) {
  return new Promise((ok) => {
    const p = spawn(BIN, ['plugin', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('exit', (code) => ok({ code, stdout, stderr }));
  });
}

test('the CLI pushes, lists, rolls back and removes against a running node', async () => {
  const node = await start({ plugins: ['chat'] });
  const env = { PORTICO_ADMIN_URL: node.url, PORTICO_ADMIN_TOKEN: ADMIN };
  const s = await open(node, '/chat');
  const file = join(PLUGIN_DIR, 'chat.wasm');

  const push = await cli(['push', file, '--config', 'version=2.0.0'], env);
  assert.equal(push.code, 0, push.stderr);
  assert.match(push.stdout, /^pushed chat 2\.0\.0 \(revision 2/);
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '2.0.0');

  const ls = await cli(['ls'], env);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /^NAME\s+VERSION/);
  assert.match(ls.stdout, /\nchat\s+2\.0\.0\s+2\s/);
  const json = await cli(['ls', '--json'], env);
  assert.deepEqual(JSON.parse(json.stdout).plugins.map((p) => [p.name, p.version, p.connections]), [['chat', '2.0.0', 1]]);

  const versions = await cli(['versions', 'chat', '--json'], env);
  assert.equal(JSON.parse(versions.stdout).revisions.length, 2);

  const back = await cli(['rollback', 'chat'], env);
  assert.equal(back.code, 0, back.stderr);
  assert.match(back.stdout, /^rolled back: chat 0\.1\.0 \(revision 1/);
  assert.equal((await call(s, 'nick', { name: 'a' })).v, '0.1.0');

  const named = await cli(['push', join(PLUGIN_DIR, 'echo.wasm'), '--name', 'parrot', '--json'], env);
  assert.equal(JSON.parse(named.stdout).mount, '/parrot');

  const told = next(s, 'portico:disconnect');
  const rm = await cli(['rm', 'chat'], env);
  assert.equal(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, /^removed chat from \/chat \(1 clients disconnected\)/);
  assert.deepEqual((await told)[0], { reason: 'plugin_removed' });

  // Failures: non-zero exit and one line naming the reason.
  const denied = await cli(['ls'], { ...env, PORTICO_ADMIN_TOKEN: 'wrong' });
  assert.equal(denied.code, 1);
  assert.equal(denied.stderr.trim().split('\n').length, 1);
  assert.match(denied.stderr, /admin token rejected \(admin_token_invalid, HTTP 403\)/);
  const bad = join(mkdtempSync(join(tmpdir(), 'portico-bad-')), 'bad.wasm');
  writeFileSync(bad, Buffer.from('0061736d01000000', 'hex'));
  const refused = await cli(['push', bad, '--name', 'parrot'], env);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /core wasm module.*\(not_a_component, HTTP 400\)/);
  const down = await cli(['ls', '--url', 'http://127.0.0.1:1'], env);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^error: /);
});
