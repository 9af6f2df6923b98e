// SSE end to end: the real binary, the npm `eventsource` client, raw HTTP
// readers, curl over HTTP/2 (h2c and TLS), and Socket.IO clients sharing channels.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { startPortico, connect, call, next, token } from './fixture.mjs';
import { proxy as tcpProxy } from './proxy.mjs';
import { openStream as openStreamAt } from './sse-client.mjs';

const KEY = 'e2e-publish-key';
const ENV = {
  PORTICO_SSE__KEEP_ALIVE_MS: '200',
  PORTICO_SSE__RETRY_MS: '50',
  PORTICO_SSE__BUFFER: '16',
  PORTICO_API__PUBLISH_ROLE: 'publisher',
};
const start = (opts = {}) => startPortico({
  plugins: ['feed', 'chat'],
  args: ['--api-key', KEY],
  ...opts,
  env: { ...ENV, ...opts.env },
});

let node;
const cleanup = [];
before(async () => { node = await start(); });
after(async () => {
  for (const f of cleanup.reverse()) await f();
  await node.stop();
});

/** POST /api/v1/publish; resolves with { status, body }. */
async function publish(body, { key = KEY, url = node.url, raw } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(`${url}/api/v1/publish`, {
    method: 'POST', headers, body: raw ?? JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function publishOk(channel, data, { plugin = 'feed', event = 'post' } = {}) {
  const r = await publish({ plugin, channel, event, data });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.id;
}

/** Open an SSE stream on this file's node (or `url`); closed after the suite. */
const openStream = (path, { url = node.url, ...opts } = {}) => openStreamAt(url, path, { ...opts, cleanup });

/** Whether event id `a` (`<ms>-<seq>`) sorts before `b`. */
function idLess(a, b) {
  const [x, y] = [a, b].map((id) => id.split('-').map(BigInt));
  return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
}

const events = (s, name = 'post') => s.frames.filter((f) => f.event === name);

/** Resolves when `cond()` holds, checked whenever `emitter` fires `event`. */
const until = (target, event, cond) => new Promise((ok) => {
  if (cond()) { ok(); return; }
  const h = () => { if (cond()) { target.removeEventListener(event, h); ok(); } };
  target.addEventListener(event, h);
});

test('eventsource resumes after a forced disconnect with every missed event exactly once, in order', async () => {
  const p = await tcpProxy(node.url);
  cleanup.push(p.close);
  const es = new EventSource(`${p.url}/sse/feed?channel=news&access_token=${token({ sub: 'reader' })}`);
  cleanup.push(async () => es.close());
  const got = [];
  let opens = 0;
  es.addEventListener('open', () => { opens += 1; });
  es.addEventListener('post', (e) => got.push({ id: e.lastEventId, n: JSON.parse(e.data).n }));
  await until(es, 'open', () => opens === 1);

  let n = 0;
  const burst = async (count) => { for (let i = 0; i < count; i++) await publishOk('news', { n: n++ }); };
  await burst(20);
  await until(es, 'post', () => got.length === 20);

  // Cut the connection and keep the client out while 20 events are published.
  p.refusing = true;
  p.cut();
  await until(es, 'error', () => es.readyState === es.CONNECTING);
  await burst(20);
  p.refusing = false;
  await until(es, 'open', () => opens === 2);
  await burst(20);
  await until(es, 'post', () => got.length >= 60);
  // A few more round trips: nothing extra (a duplicate) may arrive.
  await publishOk('news', { n: n++ });
  await until(es, 'post', () => got.length >= 61);

  assert.deepEqual(got.map((g) => g.n), Array.from({ length: 61 }, (_, i) => i));
  for (let i = 1; i < got.length; i++) {
    assert.ok(idLess(got[i - 1].id, got[i].id), `ids increase: ${got[i - 1].id} < ${got[i].id}`);
  }
  const resumed = p.requests.at(-1).toLowerCase();
  assert.match(resumed, new RegExp(`last-event-id: ${got[19].id}`), 'the reconnect carried Last-Event-ID');
});

test('lastEventId on a first connect replays the rest; an id older than history gets resync', async () => {
  const first = await publishOk('ticker:ACME', { n: 1 });
  await publishOk('ticker:ACME', { n: 2 });
  await publishOk('ticker:ACME', { n: 3 });
  const t = token({ sub: 'reader' });
  const s = await openStream(`/sse/feed?channel=ticker:ACME&access_token=${t}&lastEventId=${first}`);
  await s.waitFor((f) => f.data && JSON.parse(f.data).n === 3);
  assert.deepEqual(events(s).map((f) => JSON.parse(f.data).n), [2, 3]);
  assert.equal(s.frames[0].retry, '50', 'the stream starts with the retry hint');
  s.close();

  // An id from before this node started cannot be resumed: the client is told.
  const old = await openStream(`/sse/feed?channel=ticker:ACME&channel=news&access_token=${t}&lastEventId=1-0`);
  const resync = await old.waitFor((f) => f.event === 'resync');
  assert.deepEqual(JSON.parse(resync.data), { channels: ['ticker:ACME', 'news'] });
  assert.equal(events(old).length, 0);
  assert.match(resync.id, /^\d+-\d+$/);
  // Live events follow the resync.
  await publishOk('news', { n: 'live' });
  await old.waitFor((f) => f.event === 'post');
  old.close();
});

test('one Last-Event-ID resumes several channels of one stream', async () => {
  const t = token({ sub: 'multi' });
  const s = await openStream(`/sse/feed?channel=ticker:A&channel=ticker:B&access_token=${t}`);
  await s.waitFor((f) => f.retry);
  for (let i = 0; i < 6; i++) await publishOk(i % 2 ? 'ticker:B' : 'ticker:A', { n: i });
  await s.waitFor((f) => f.data && JSON.parse(f.data).n === 5);
  s.close();
  const seen = events(s);
  const resumeAfter = seen[2].id; // the client "got" 0, 1, 2
  const again = await openStream(`/sse/feed?channel=ticker:A&channel=ticker:B&access_token=${t}`, {
    headers: { 'last-event-id': resumeAfter },
  });
  await again.waitFor((f) => f.data && JSON.parse(f.data).n === 5);
  assert.deepEqual(events(again).map((f) => JSON.parse(f.data).n), [3, 4, 5]);
  again.close();
});

test('a Socket.IO client in room x and an SSE client on channel x both receive one publish', async () => {
  const alice = await connect(node.url, '/chat', { auth: { token: token({ sub: 'alice' }) } });
  const bob = await connect(node.url, '/chat', { auth: { token: token({ sub: 'bob' }) } });
  cleanup.push(async () => { alice.close(); bob.close(); });
  assert.equal((await call(alice, 'join', { room: 'x' })).ok, true);
  assert.equal((await call(bob, 'join', { room: 'x' })).ok, true);
  const sse = await openStream(`/sse/chat?channel=x&access_token=${token({ sub: 'carol' })}`);
  await sse.waitFor((f) => f.retry);

  // From a backend, through the publish API.
  const atAlice = next(alice, 'notice');
  await publishOk('x', { text: 'from the API' }, { plugin: 'chat', event: 'notice' });
  assert.deepEqual((await atAlice)[0], { text: 'from the API' });
  const viaSse = await sse.waitFor((f) => f.event === 'notice');
  assert.deepEqual(JSON.parse(viaSse.data), { text: 'from the API' });

  // From a plugin: bob's chat message is published to room x.
  const atAlice2 = next(alice, 'message');
  assert.equal((await call(bob, 'message', { room: 'x', text: 'hi all' })).ok, true);
  const expected = { from: 'bob', room: 'x', text: 'hi all' };
  assert.deepEqual((await atAlice2)[0], expected);
  const viaSse2 = await sse.waitFor((f) => f.event === 'message');
  assert.deepEqual(JSON.parse(viaSse2.data), expected);
  assert.ok(idLess(viaSse.id, viaSse2.id), `${viaSse.id} < ${viaSse2.id}`);
  sse.close();
});

test('bad or missing tokens get 401 with the gateway codes; refused channels 403; unknown plugins 404', async () => {
  const now = Math.floor(Date.now() / 1000);
  const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`;
  const corpus = [
    [undefined, 'token_missing'],
    ['garbage', 'token_malformed'],
    [token({}, { secret: 'not-the-secret' }), 'token_bad_signature'],
    [token({ exp: now - 3600 }), 'token_expired'],
    [none, 'token_algorithm'],
  ];
  for (const [t, code] of corpus) {
    const viaQuery = await openStream(`/sse/feed?channel=news${t ? `&access_token=${encodeURIComponent(t)}` : ''}`);
    assert.equal(viaQuery.status, 401, code);
    assert.equal(viaQuery.json.error.code, code);
    assert.equal(typeof viaQuery.json.error.message, 'string');
    if (t) {
      const viaHeader = await openStream('/sse/feed?channel=news', { headers: { authorization: `Bearer ${t}` } });
      assert.deepEqual([viaHeader.status, viaHeader.json.error.code], [401, code]);
    }
  }
  const alice = token({ sub: 'alice' });
  const refused = await openStream(`/sse/feed?channel=news&channel=user:bob&access_token=${alice}`);
  assert.deepEqual([refused.status, refused.json.error.code], [403, 'forbidden']);
  assert.match(refused.json.error.message, /user:bob/);
  const unknown = await openStream(`/sse/feed?channel=secret&access_token=${alice}`);
  assert.deepEqual([unknown.status, unknown.json.error.code], [403, 'unknown_channel']);
  const own = await openStream(`/sse/feed?channel=user:alice&access_token=${alice}`);
  assert.equal(own.status, 200);
  assert.match(own.res.headers['content-type'], /^text\/event-stream/);
  own.close();
  const noPlugin = await openStream(`/sse/nowhere?channel=news&access_token=${alice}`);
  assert.deepEqual([noPlugin.status, noPlugin.json.error.code], [404, 'unknown_plugin']);
  const noChannel = await openStream(`/sse/feed?access_token=${alice}`);
  assert.deepEqual([noChannel.status, noChannel.json.error.code], [400, 'bad_request']);
  const badId = await openStream(`/sse/feed?channel=news&access_token=${alice}`, { headers: { 'last-event-id': 'yesterday' } });
  assert.deepEqual([badId.status, badId.json.error.code], [400, 'bad_last_event_id']);
});

test('an idle stream carries keep-alive comments', async () => {
  const s = await openStream(`/sse/feed?channel=ticker:IDLE&access_token=${token()}`);
  await s.waitFor((f) => f.comment !== undefined && f.retry === undefined);
  const firstAt = s.frames.length;
  await s.waitFor((f) => s.frames.indexOf(f) >= firstAt && f.comment !== undefined);
  assert.equal(events(s).length, 0);
  assert.ok(s.frames.filter((f) => f.comment !== undefined).length >= 2);
  s.close();
});

test('a stream ends when its token expires, and a fresh token resumes it', async () => {
  const exp = Math.floor(Date.now() / 1000) + 2;
  const s = await openStream(`/sse/feed?channel=ticker:EXP&access_token=${token({ exp })}`);
  await s.waitFor((f) => f.retry);
  await publishOk('ticker:EXP', { n: 1 });
  const seen = await s.waitFor((f) => f.event === 'post');
  await s.ended;
  assert.ok(Date.now() / 1000 >= exp - 1, 'the stream lasted until the token expired');
  await publishOk('ticker:EXP', { n: 2 });
  const again = await openStream(`/sse/feed?channel=ticker:EXP&access_token=${token()}&lastEventId=${seen.id}`);
  const missed = await again.waitFor((f) => f.event === 'post');
  assert.equal(JSON.parse(missed.data).n, 2);
  again.close();
});

test('the publish API refuses bad credentials, malformed bodies and unknown plugins', async () => {
  const good = { plugin: 'feed', channel: 'news', event: 'post', data: { n: 0 } };
  const missing = await publish(good, { key: null });
  assert.deepEqual([missing.status, missing.body.error.code], [401, 'token_missing']);
  const wrong = await publish(good, { key: 'not-a-key' });
  assert.deepEqual([wrong.status, wrong.body.error.code], [401, 'invalid_api_key']);
  const user = await publish(good, { key: token({ sub: 'alice', role: 'reader' }) });
  assert.deepEqual([user.status, user.body.error.code], [403, 'forbidden']);
  const forged = await publish(good, { key: token({ role: 'publisher' }, { secret: 'nope' }) });
  assert.deepEqual([forged.status, forged.body.error.code], [401, 'token_bad_signature']);
  const service = await publish(good, { key: token({ sub: 'svc', role: 'publisher' }) });
  assert.equal(service.status, 200);
  assert.match(service.body.id, /^\d+-\d+$/);

  for (const raw of ['not json', '{"plugin":"feed"', '[]', '{}',
    JSON.stringify({ plugin: 'feed', channel: 'news' }),
    JSON.stringify({ plugin: 'feed', channel: 7, event: 'post' }),
    JSON.stringify({ ...good, extra: true }),
    JSON.stringify({ ...good, channel: 'a\nb' }),
    JSON.stringify({ ...good, event: '' })]) {
    const r = await publish(null, { raw });
    assert.deepEqual([r.status, r.body.error.code], [400, 'bad_request'], raw);
    assert.equal(typeof r.body.error.message, 'string');
  }
  const nowhere = await publish({ ...good, plugin: 'nowhere' });
  assert.deepEqual([nowhere.status, nowhere.body.error.code], [404, 'unknown_plugin']);
});

test('a slow reader is cut off without delaying a fast one, then resumes from history', async () => {
  const t = token({ sub: 'reader' });
  const path = `/sse/feed?channel=ticker:FLOOD&access_token=${t}`;
  const slow = await openStream(path, { paused: true });
  const fast = await openStream(path);
  await fast.waitFor((f) => f.retry);
  const big = 'x'.repeat(64 * 1024);
  const total = 300; // ~19 MiB: more than the socket buffers hold
  for (let i = 0; i < total; i++) await publishOk('ticker:FLOOD', { n: i, big });
  // The fast reader has everything while the slow one has read nothing at all.
  await fast.waitFor((f) => f.data && JSON.parse(f.data).n === total - 1);
  assert.deepEqual(events(fast).map((f) => JSON.parse(f.data).n), Array.from({ length: total }, (_, i) => i));
  assert.equal(slow.frames.length, 0);
  fast.close();

  // The slow reader finds its stream ended after what was queued for it...
  slow.res.resume();
  await slow.ended;
  // It was told why, as a Socket.IO client would be.
  assert.equal(slow.frames.at(-1).event, 'portico:disconnect');
  assert.deepEqual(JSON.parse(slow.frames.at(-1).data), { reason: 'slow_consumer' });
  const kept = events(slow).map((f) => JSON.parse(f.data).n);
  assert.ok(kept.length < total, `the slow reader was cut off (got ${kept.length})`);
  assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => i));
  // ...and resumes from history with exactly the rest.
  const again = await openStream(path, { headers: { 'last-event-id': events(slow).at(-1).id } });
  await again.waitFor((f) => f.data && JSON.parse(f.data).n === total - 1);
  const rest = events(again).map((f) => JSON.parse(f.data).n);
  assert.deepEqual(rest, Array.from({ length: total - kept.length }, (_, i) => kept.length + i));
  again.close();
});

/** Run curl streaming `url`; resolves once the response headers are in. */
function curlStream(args, url) {
  return new Promise((ok, fail) => {
    const proc = spawn('curl', [...args, '-sSN', '-v', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    const c = { proc, out: '', err: '' };
    c.waitOut = (re) => new Promise((resolve, reject) => {
      const check = () => { if (re.test(c.out)) { proc.stdout.off('data', check); resolve(); } };
      proc.stdout.on('data', check);
      proc.on('exit', () => reject(new Error(`curl exited before ${re}: ${c.err}`)));
      check();
    });
    proc.stdout.on('data', (d) => { c.out += d; });
    proc.stderr.on('data', (d) => {
      c.err += d;
      if (/^< HTTP\/\S+ \d+/m.test(c.err)) ok(c);
    });
    proc.on('exit', (code) => fail(new Error(`curl exited with ${code}: ${c.err}`)));
    cleanup.push(async () => proc.kill());
  });
}

test('curl streams events over HTTP/2 with prior knowledge (h2c)', async () => {
  const c = await curlStream(['--http2-prior-knowledge'], `${node.url}/sse/feed?channel=ticker:H2C&access_token=${token()}`);
  assert.match(c.err, /^< HTTP\/2 200/m);
  await publishOk('ticker:H2C', { n: 'h2c' });
  await c.waitOut(/data: \{"n":"h2c"\}/);
  assert.match(c.out, /^event: post$/m);
  assert.match(c.out, /^id: \d+-\d+$/m);
  c.proc.kill();
});

test('with TLS: curl gets HTTP/2 through ALPN, and Socket.IO WebSocket still works over HTTP/1.1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-tls-'));
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const tls = await start({ env: { PORTICO_TLS__CERT: cert, PORTICO_TLS__KEY: key } });
  cleanup.push(() => tls.stop());
  assert.match(tls.url, /^https:\/\//);

  const c = await curlStream(['-k', '--http2'], `${tls.url}/sse/feed?channel=ticker:TLS&access_token=${token()}`);
  assert.match(c.err, /ALPN.*h2/i);
  assert.match(c.err, /^< HTTP\/2 200/m);
  execFileSync('curl', ['-sSk', '--fail', '-X', 'POST', `${tls.url}/api/v1/publish`,
    '-H', `authorization: Bearer ${KEY}`, '-H', 'content-type: application/json',
    '-d', JSON.stringify({ plugin: 'feed', channel: 'ticker:TLS', event: 'post', data: { n: 'tls' } })]);
  await c.waitOut(/data: \{"n":"tls"\}/);
  c.proc.kill();

  const s = await connect(tls.url, '/chat', { auth: { token: token({ sub: 'tls' }) }, rejectUnauthorized: false });
  cleanup.push(async () => s.close());
  assert.equal(s.io.engine.transport.name, 'websocket');
  assert.equal((await call(s, 'join', { room: 'secure' })).ok, true);
  s.close();
});

test('shutdown ends open streams and the process exits cleanly', async () => {
  const other = await start({ plugins: ['feed'] });
  const s = await openStream(`/sse/feed?channel=news&access_token=${token()}`, { url: other.url });
  await s.waitFor((f) => f.retry);
  const code = await other.stop();
  await s.ended;
  assert.equal(code, 0);
});

