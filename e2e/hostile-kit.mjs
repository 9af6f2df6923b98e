// What every hostile test measures while its attack runs: a healthy,
// authenticated client sending acked events, `/healthz` answered on a fresh
// connection, and the node's resident memory.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { connect } from './fixture.mjs';

/** Resident memory of `pid`, in MiB (VmRSS of /proc/<pid>/status). */
export function rssMiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) / 1024;
}

const percentile = (xs, p) => {
  if (xs.length === 0) return Infinity;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/**
 * A healthy client on /echo: one acked event in flight at a time, every
 * `gapMs`. `measure(ms)` returns { sent, acked, ratio, p99 } for a window.
 */
export async function healthyClient(url, token, { gapMs = 2 } = {}) {
  const socket = await connect(url, '/echo', { auth: { token } });
  let window = null;
  let running = true;
  let seq = 0;
  const loop = (async () => {
    while (running) {
      const n = seq++;
      const t0 = process.hrtime.bigint();
      let ok = false;
      try {
        const reply = await socket.timeout(2000).emitWithAck('ping', n);
        ok = reply === n;
      } catch { ok = false; }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (window) {
        window.sent += 1;
        if (ok) { window.acked += 1; window.lat.push(ms); }
      }
      await new Promise((t) => setTimeout(t, gapMs));
    }
  })();
  return {
    socket,
    async measure(ms, until) {
      window = { sent: 0, acked: 0, lat: [] };
      const w = window;
      await Promise.race([new Promise((t) => setTimeout(t, ms)), ...(until ? [until] : [])]);
      window = null;
      return { sent: w.sent, acked: w.acked, ratio: w.acked / Math.max(1, w.sent), p50: percentile(w.lat, 50), p99: percentile(w.lat, 99) };
    },
    async close() { running = false; await loop; socket.close(); },
  };
}

/** `GET /healthz` on a fresh connection from 127.0.0.1; resolves with { status, ms }. */
export function healthz(url) {
  const { port } = new URL(url);
  const t0 = process.hrtime.bigint();
  return new Promise((ok) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false, localAddress: '127.0.0.1', timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => ok({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => ok({ status: 0, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}

/** Probe `/healthz` and sample RSS every `everyMs` until `stop()`; returns { worstMs, failures, maxRss }. */
export function watch(url, pid, everyMs = 100) {
  const seen = { worstMs: 0, failures: 0, probes: 0, maxRss: rssMiB(pid) };
  let running = true;
  const loop = (async () => {
    while (running) {
      const h = await healthz(url);
      seen.probes += 1;
      if (h.status !== 200) seen.failures += 1;
      seen.worstMs = Math.max(seen.worstMs, h.ms);
      try { seen.maxRss = Math.max(seen.maxRss, rssMiB(pid)); } catch { /* exited: caught by the test */ }
      await new Promise((t) => setTimeout(t, everyMs));
    }
  })();
  return { async stop() { running = false; await loop; return seen; } };
}

/**
 * Start `node attacker.mjs mode opts`; `started` resolves when the attack is
 * under way, `done` with its JSON report.
 */
export function attack(mode, opts) {
  // At the lowest priority: on a real deployment the attacker's CPU is not the
  // node's, and here both share two cores.
  const proc = spawn('nice', ['-n', '19', process.execPath, 'attacker.mjs', mode, JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let startedOk;
  const started = new Promise((ok) => { startedOk = ok; });
  const done = new Promise((ok, fail) => {
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('started\n')) startedOk();
    });
    proc.on('exit', (code) => {
      startedOk();
      const last = out.trim().split('\n').pop();
      if (code === 0) ok(JSON.parse(last)); else fail(new Error(`attacker ${mode} exited with ${code}: ${out}`));
    });
  });
  return { started, done };
}

/**
 * Run one attack against `node` while measuring. Baseline first (no attack),
 * then the same measurements during it. Returns every figure for the asserts.
 */
export async function underAttack(node, client, mode, opts, { baselineMs = 1500 } = {}) {
  const rss0 = rssMiB(node.proc.pid);
  const baseline = await client.measure(baselineMs);
  const a = attack(mode, { url: node.url, ...opts });
  await a.started;
  const w = watch(node.url, node.proc.pid);
  const during = await client.measure(opts.holdMs ?? 3000, a.done.then(() => {}));
  const health = await w.stop();
  const report = await a.done;
  return { rss0, baseline, during, health, report, rssGrowth: health.maxRss - rss0 };
}
