// Run with: cd e2e && node bench/flap.mjs   (PORTICO_BIN, PORTICO_PLUGIN_DIR as for the tests;
// the Node peers need `make bench-deps`; use a release build for figures: PORTICO_BIN=../target/release/portico)
//
// Messages lost under network flaps, side by side: Portico (connection state
// recovery on), Node socket.io 4.8 with `connectionStateRecovery`, and without.
// A receiver (official socket.io-client) is cut every FLAP_MS through a TCP
// proxy while a sender publishes COUNT acked messages at RATE/s to its room; a
// receiver that was not recovered rejoins, as an application would. Prints one
// JSON line per peer: acked, lost, duplicated, reconnects, recovered, and the
// time from a recovered reconnect to its first replayed message (p50/max ms).
// A benchmark, not a test: it asserts nothing.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { io } from 'socket.io-client';
import { startPortico, connect, call, token, tempFile, SECRET } from '../fixture.mjs';
import { proxy } from '../proxy.mjs';

const COUNT = Number(process.env.COUNT ?? 2000);
const RATE = Number(process.env.RATE ?? 400);
const FLAP_MS = Number(process.env.FLAP_MS ?? 700);
const NODE_PEER = resolve('../bench/peers/node/server.mjs');

function startNodePeer(recoveryMs) {
  return new Promise((ok, fail) => {
    const proc = spawn('node', [NODE_PEER], {
      env: { ...process.env, PORT: '0', BENCH_SECRET: SECRET, RECOVERY_MS: String(recoveryMs), NODE_ENV: 'production' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    proc.stdout.on('data', (d) => {
      const m = String(d).match(/listening on (http:\/\/\S+)/);
      if (m) ok({ url: m[1], stop: () => proc.kill('SIGTERM') });
    });
    proc.once('exit', (code) => fail(new Error(`node peer exited with ${code}`)));
  });
}

async function run(name, url) {
  const cutter = await proxy(url);
  const r = io(`${cutter.url}/chat`, {
    auth: { token: token({ sub: 'rx' }) }, transports: ['websocket'], forceNew: true,
    reconnectionDelay: 20, reconnectionDelayMax: 40, randomizationFactor: 0,
  });
  const got = [];
  let reconnects = 0;
  let recovered = 0;
  let reconnectedAt = null;
  const latencies = [];
  r.on('message', (m) => {
    got.push(m.text);
    if (reconnectedAt !== null) { latencies.push(Date.now() - reconnectedAt); reconnectedAt = null; }
  });
  await new Promise((ok) => r.once('connect', ok));
  await call(r, 'join', { room: 'flap' });
  r.on('connect', () => {
    reconnects++;
    if (r.recovered) { recovered++; reconnectedAt = Date.now(); } else r.emit('join', { room: 'flap' });
  });
  const sender = await connect(url, '/chat', { auth: { token: token({ sub: 'tx' }) } });
  await call(sender, 'join', { room: 'flap' });
  const flaps = setInterval(() => { if (r.connected) cutter.cut(); }, FLAP_MS);
  const acks = [];
  const perTick = Math.max(1, Math.round(RATE / 100));
  for (let i = 0; i < COUNT; i++) {
    acks.push(call(sender, 'message', { room: 'flap', text: String(i) }).then((a) => (a.ok ? String(i) : null), () => null));
    if (i % perTick === perTick - 1) await new Promise((ok) => setTimeout(ok, 10));
  }
  const acked = (await Promise.all(acks)).filter((t) => t !== null);
  clearInterval(flaps);
  // Let in-flight and replayed messages arrive.
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && new Set(got).size < acked.length) await new Promise((ok) => setTimeout(ok, 50));
  const seen = new Set(got);
  latencies.sort((a, b) => a - b);
  const line = {
    peer: name, acked: acked.length, received: got.length,
    lost: acked.filter((t) => !seen.has(t)).length, duplicated: got.length - seen.size,
    lost_pct: +(100 * acked.filter((t) => !seen.has(t)).length / Math.max(1, acked.length)).toFixed(2),
    reconnects, recovered,
    first_replayed_ms_p50: latencies[Math.floor(latencies.length / 2)] ?? null,
    first_replayed_ms_max: latencies.at(-1) ?? null,
  };
  console.log(JSON.stringify(line));
  r.close(); sender.close(); await cutter.close();
}

const config = tempFile('portico.toml', '[throttle]\nevents_per_sec = 0\n');
const portico = await startPortico({ plugins: ['chat'], args: ['--config', config] });
await run('portico', portico.url);
await portico.stop();
for (const [name, ms] of [['node-socket.io-recovery', 120_000], ['node-socket.io', 0]]) {
  let peer;
  try {
    peer = await startNodePeer(ms);
  } catch (e) {
    console.log(JSON.stringify({ peer: name, error: `${e.message} (run make bench-deps)` }));
    continue;
  }
  await run(name, peer.url);
  peer.stop();
}
process.exit(0);
