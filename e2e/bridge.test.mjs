// The bridge plugin fronts an HTTP backend written here in a few lines: each event is
// POSTed with the verified principal, and the backend's answer is performed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startPortico, tempFile, connectError, call, next, token, clients } from './fixture.mjs';

let node;
let backend;
const seen = [];
const { openAs, closeAll } = clients();

before(async () => {
  // The whole backend: a team's existing service would do the same.
  backend = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const e = JSON.parse(body);
      seen.push(e);
      const answer = e.event === '$connect'
        ? (e.subject === 'mallory' ? { error: { code: 'banned', message: 'not you' } } : {})
        : e.event === 'join'
          ? { ack: { ok: true }, actions: [{ type: 'join', channel: e.args[0].room }] }
          : e.event === 'say'
            ? { ack: { ok: true, by: e.subject }, actions: [{ type: 'publish', channel: e.args[0].room, event: 'said', data: { by: e.subject, text: e.args[0].text } }] }
            : { error: { code: 'unknown_event', message: `no ${e.event}` } };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise((ok) => backend.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${backend.address().port}`;
  const config = tempFile('portico.toml', `
[plugins.bridge]
outbound = ["${base}"]

[plugins.bridge.config]
url = "${base}/portico"
connect = "forward"
`);
  node = await startPortico({ plugins: ['bridge'], args: ['--config', config] });
});
after(async () => {
  closeAll();
  await node.stop();
  backend.close();
});

const open = (sub) => openAs(node, '/bridge', sub, { role: 'member' });

test('events reach the backend with the principal; its actions are performed', async () => {
  const ann = await open('ann');
  const bob = await open('bob');
  assert.deepEqual(await call(bob, 'join', { room: 'r1' }), { ok: true });
  const heard = next(bob, 'said');
  assert.deepEqual(await call(ann, 'say', { room: 'r1', text: 'hello' }), { ok: true, by: 'ann' });
  assert.deepEqual((await heard)[0], { by: 'ann', text: 'hello' });
  const say = seen.find((e) => e.event === 'say');
  assert.equal(say.subject, 'ann');
  assert.equal(say.claims.role, 'member');
  assert.equal(say.namespace, '/bridge');
  assert.equal(say.socket, ann.id);
  assert.equal(say.wants_ack, true);
  const refused = await call(ann, 'dance', {});
  assert.deepEqual(refused, { ok: false, code: 'unknown_event', message: 'no dance' });
});

test('the backend may refuse a connection', async () => {
  const err = await connectError(node.url, '/bridge', { auth: { token: token({ sub: 'mallory' }) } });
  assert.match(err.message, /^banned: not you/);
});
