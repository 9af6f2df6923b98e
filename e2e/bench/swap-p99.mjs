// Run with: cd e2e && node bench/swap-p99.mjs   (PORTICO_BIN, PORTICO_PLUGIN_DIR as for the tests)
//
// Ack latency of the `chat` plugin under steady load from real socket.io
// clients, before, during and after a hot swap (PUT of a new version, which
// compiles it: no cache dir). Prints p50/p99 per phase. A benchmark, not a
// test: it asserts nothing but zero failed acks.
import { ADMIN_TOKEN, startPortico, connect, call, token, wasm, deploy } from '../fixture.mjs';

const CLIENTS = Number(process.env.CLIENTS ?? 20);
const PHASE_MS = Number(process.env.PHASE_MS ?? 3000);

const node = await startPortico({ plugins: ['chat'], args: ['--admin-token', ADMIN_TOKEN] });
const clients = await Promise.all(
  Array.from({ length: CLIENTS }, (_, i) => connect(node.url, '/chat', { auth: { token: token({ sub: `u${i}` }) } })),
);
const samples = []; // [sentAt, latencyMs]
let failed = 0;
let stop = false;
const loops = clients.map(async (c, i) => {
  let n = 0;
  while (!stop) {
    const t = performance.now();
    const ack = await call(c, 'nick', { name: `n${i}-${n++}` });
    samples.push([t, performance.now() - t]);
    if (ack.ok !== true) failed += 1;
  }
});
// The phases are measured over fixed durations: these sleeps are the measurement windows.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(1000); // warm-up
const baseStart = performance.now();
await sleep(PHASE_MS);
const swapStart = performance.now();
const res = await deploy(node, 'chat', wasm('chat'), 'config.version=2.0.0');
const swapEnd = performance.now();
if (res.status !== 200) throw new Error(`swap failed: ${res.status} ${JSON.stringify(res.body)}`);
await sleep(PHASE_MS);
stop = true;
await Promise.all(loops);
clients.forEach((c) => c.close());
await node.stop();

const stats = (from, to) => {
  const l = samples.filter(([t]) => t >= from && t < to).map(([, d]) => d).sort((a, b) => a - b);
  const q = (p) => l[Math.min(l.length - 1, Math.ceil(p * l.length) - 1)]?.toFixed(2);
  return { acks: l.length, per_s: Math.round(l.length / ((to - from) / 1000)), p50_ms: q(0.5), p99_ms: q(0.99), max_ms: q(1) };
};
console.log(JSON.stringify({ clients: CLIENTS, failed, swap_ms: Math.round(swapEnd - swapStart) }));
console.table({
  before: stats(baseStart, swapStart),
  during_swap: stats(swapStart, swapEnd),
  after: stats(swapEnd, swapEnd + PHASE_MS),
});
