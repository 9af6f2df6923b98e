// /metrics: valid Prometheus text (parsed by a real parser), and its numbers
// move with traffic, traps, auth failures and SSE streams.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { startPortico, connect, connectError, call, next, token, eventually, deliveredAcross, clients } from './fixture.mjs';

let node;
const { open, closeAll } = clients();

before(async () => { node = await startPortico({ plugins: ['chat', 'echo', 'faulty'] }); });
after(async () => { closeAll(); await node.stop(); });

/** Scrape and parse: a map from metric name to its family (and `.text`, the raw page). */
async function scrape() {
  const res = await fetch(`${node.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const families = parsePrometheusTextFormat(text);
  return Object.assign(new Map(families.map((f) => [f.name, f])), { text });
}

/**
 * A histogram sample line's value. The parser validates histograms but folds
 * samples that carry labels besides `le` into one, so per-plugin numbers are
 * read from the page's lines.
 */
function histogramLine(m, line) {
  const found = m.text.split('\n').find((l) => l.startsWith(`${line} `));
  assert.ok(found, `no line ${line}`);
  return Number(found.slice(line.length + 1));
}

/** The value of the sample of `name` whose labels include `labels` (0 if absent). */
function value(m, name, labels = {}) {
  const family = m.get(name);
  assert.ok(family, `metric ${name} is missing`);
  const match = (s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v);
  const samples = family.metrics.filter(match);
  return samples.reduce((sum, s) => sum + Number(s.value ?? s.count), 0);
}

test('/metrics parses as Prometheus text and declares every family with its type', async () => {
  const m = await scrape();
  const types = {
    portico_connections: 'GAUGE',
    portico_events_in_total: 'COUNTER',
    portico_events_out_total: 'COUNTER',
    portico_acks_total: 'COUNTER',
    portico_rate_limited_events_total: 'COUNTER',
    portico_dropped_packets_total: 'COUNTER',
    portico_sse_streams: 'GAUGE',
    portico_sse_cut_off_total: 'COUNTER',
    portico_plugin_active_version: 'GAUGE',
    portico_plugin_calls_total: 'COUNTER',
    portico_plugin_errors_total: 'COUNTER',
    portico_plugin_traps_total: 'COUNTER',
    portico_plugin_call_duration_seconds: 'HISTOGRAM',
    portico_plugin_kv_refused_total: 'COUNTER',
  };
  for (const [name, type] of Object.entries(types)) {
    assert.equal(m.get(name)?.type, type, `${name} should be a ${type}`);
  }
  assert.equal(value(m, 'portico_plugin_active_version', { plugin: 'chat', role: 'active' }), 1);
  // Not in cluster mode: no Redis metrics.
  assert.equal(m.has('portico_redis_up'), false);
  assert.equal(m.has('portico_redis_refused_total'), false);
});

test('counters move when events flow and when a plugin traps', async () => {
  const before = await scrape();
  const alice = await open(node.url, '/chat', { auth: { token: token({ sub: 'alice' }) } });
  const bob = await open(node.url, '/chat', { auth: { token: token({ sub: 'bob' }) }, transports: ['polling'] });
  await call(alice, 'join', { room: 'lobby' });
  await call(bob, 'join', { room: 'lobby' });
  const got = next(bob, 'message');
  await call(alice, 'message', { room: 'lobby', text: 'hi' });
  await got;

  const during = await scrape();
  assert.equal(value(during, 'portico_connections', { namespace: '/chat', transport: 'websocket' }), 1);
  assert.equal(value(during, 'portico_connections', { namespace: '/chat', transport: 'polling' }), 1);
  const moved = (name, labels) => value(during, name, labels) - value(before, name, labels);
  assert.equal(moved('portico_events_in_total', { namespace: '/chat' }), 3);
  assert.equal(moved('portico_acks_total', { namespace: '/chat', result: 'ok' }), 3);
  assert.ok(moved('portico_events_out_total', { namespace: '/chat' }) >= 1);
  assert.ok(moved('portico_plugin_events_total', { plugin: 'chat' }) === 3);
  // on-connect x2 + three events, at least.
  assert.ok(moved('portico_plugin_calls_total', { plugin: 'chat' }) >= 5);
  const h = 'portico_plugin_call_duration_seconds';
  const chat = '{plugin="chat",version="0.1.0",role="active"';
  const count = histogramLine(during, `${h}_count${chat}}`);
  assert.ok(count >= 5, 'the call-time histogram counts calls');
  assert.equal(histogramLine(during, `${h}_bucket${chat},le="+Inf"}`), count);
  assert.ok(histogramLine(during, `${h}_bucket${chat},le="1"}`) <= count);
  assert.ok(histogramLine(during, `${h}_sum${chat}}`) > 0);

  const faulty = await open(node.url, '/faulty');
  const [ack] = [await call(faulty, 'panic')];
  assert.equal(ack.ok, false);
  const after = await scrape();
  assert.equal(value(after, 'portico_plugin_traps_total', { plugin: 'faulty', kind: 'trap' })
    - value(before, 'portico_plugin_traps_total', { plugin: 'faulty', kind: 'trap' }), 1);
  assert.ok(value(after, 'portico_plugin_errors_total', { plugin: 'faulty' }) >= 1);
  assert.equal(value(after, 'portico_acks_total', { namespace: '/faulty', result: 'error' })
    - value(before, 'portico_acks_total', { namespace: '/faulty', result: 'error' }), 1);
});

test('auth failures are counted by transport and code', async () => {
  const before = await scrape().then((m) => (m.has('portico_auth_failures_total') ? m : null));
  const count = (m, labels) => (m ? value(m, 'portico_auth_failures_total', labels) : 0);
  await connectError(node.url, '/chat', { auth: { token: 'not-a-jwt' } });
  await connectError(node.url, '/chat', { auth: {} });
  const sse = await fetch(`${node.url}/sse/chat?channel=lobby&access_token=${token({ sub: 'x' }, { secret: 'wrong' })}`);
  assert.equal(sse.status, 401);
  const m = await scrape();
  assert.equal(count(m, { transport: 'socketio', code: 'token_missing' }) - count(before, { transport: 'socketio', code: 'token_missing' }), 1);
  assert.equal(m.get('portico_auth_failures_total').metrics
    .filter((s) => s.labels.transport === 'socketio').reduce((a, s) => a + Number(s.value), 0)
    - (before ? before.get('portico_auth_failures_total').metrics.filter((s) => s.labels.transport === 'socketio').reduce((a, s) => a + Number(s.value), 0) : 0), 2);
  assert.equal(count(m, { transport: 'sse' }) - count(before, { transport: 'sse' }), 1);
});

test('open SSE streams are a gauge', async () => {
  const ctl = new AbortController();
  const res = await fetch(`${node.url}/sse/chat?channel=lobby&access_token=${token()}`, { signal: ctl.signal });
  assert.equal(res.status, 200);
  assert.equal(value(await scrape(), 'portico_sse_streams', { plugin: 'chat' }), 1);
  ctl.abort();
  await res.body.cancel().catch(() => {});
  // The stream is unregistered once the server notices the closed connection.
  await eventually('the SSE stream gauge to go back to 0', async () => value(await scrape(), 'portico_sse_streams', { plugin: 'chat' }) === 0, { timeout: 5000, every: 50 });
});

test('cluster mode: cross-node publishes, drops and Redis up/down', async () => {
  const { startRedis } = await import('./redis.mjs');
  const redis = await startRedis();
  const env = { PORTICO_REDIS_URL: redis.url };
  const [a, b] = await Promise.all([startPortico({ plugins: ['chat'], env }), startPortico({ plugins: ['chat'], env })]);
  const local = [];
  try {
    const scrapeOf = async (n) => parsePrometheusTextFormat(await (await fetch(`${n.url}/metrics`)).text());
    const num = (families, name) => Number(families.find((f) => f.name === name)?.metrics[0].value);
    assert.equal(num(await scrapeOf(a), 'portico_redis_up'), 1);
    const publishedBefore = num(await scrapeOf(b), 'portico_cluster_published_total');

    const alice = await connect(a.url, '/chat', { auth: { token: token({ sub: 'alice' }) } });
    const bob = await connect(b.url, '/chat', { auth: { token: token({ sub: 'bob' }) } });
    local.push(alice, bob);
    await call(alice, 'join', { room: 'x' });
    await call(bob, 'join', { room: 'x' });
    // Subscriptions may still be settling: retry until one message crosses.
    await deliveredAcross(alice, 'message', (i) => call(bob, 'message', { room: 'x', text: `m${i}` }), 8400);
    assert.ok(num(await scrapeOf(b), 'portico_cluster_published_total') > publishedBefore);

    await redis.stop();
    // The next command to Redis fails and the node reports it down. (While
    // Redis is away a node counts itself alone, so room messages are not
    // even offered to Redis: `portico_cluster_dropped_total` stays as it was.)
    // Only a command notices, and only the gauge says so: send one and scrape, until it does.
    let i = 0;
    const down = await eventually('Redis reported down', async () => {
      await call(bob, 'message', { room: 'x', text: `alone${i++}` });
      const m = await scrapeOf(b);
      return num(m, 'portico_redis_up') === 0 && m;
    }, { every: 100 });
    assert.ok(Number.isFinite(num(down, 'portico_cluster_dropped_total')), 'cluster_dropped is exported');
  } finally {
    local.forEach((s) => s.close());
    await Promise.all([a.stop(), b.stop()]);
    await redis.stop();
  }
});
