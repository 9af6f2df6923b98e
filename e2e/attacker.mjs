// The hostile side of hostile.test.mjs, in its own process so its work does not
// delay the healthy client's measurements. Usage:
//   node attacker.mjs <mode> '<json options>'
// Prints one line `started` once the attack is under way, then one JSON line
// with what it saw, and exits by itself after `holdMs`.
// Every connection binds a loopback address other than 127.0.0.1
// (127.0.0.2 ... 127.0.0.<1 + ips>): the healthy client's address stays its own.
import net from 'node:net';
import http from 'node:http';
import WebSocket from 'ws';

const [mode, raw] = process.argv.slice(2);
const o = JSON.parse(raw ?? '{}');
const { port } = new URL(o.url);
const ip = (i) => `127.0.0.${2 + (i % (o.ips ?? 1))}`;
const sleep = (ms) => new Promise((t) => setTimeout(t, ms));
const started = () => process.stdout.write('started\n');
const finish = (result) => { process.stdout.write(`${JSON.stringify(result)}\n`); process.exit(0); };

/** Open a raw TCP connection from `localAddress`; resolves once connected (or failed). */
function tcp(localAddress, onData) {
  return new Promise((ok) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    const info = { socket: s, opened: false, closedAt: null, openedAt: 0, error: null };
    s.on('connect', () => { info.opened = true; info.openedAt = Date.now(); ok(info); });
    s.on('data', (d) => onData?.(d, info));
    s.on('error', (e) => { info.error = e.code; if (!info.opened) ok(info); });
    s.on('close', () => { info.closedAt = Date.now(); });
  });
}

/** Sessions open now, and the most open at once. */
const live = { now: 0, max: 0 };

/** An Engine.IO WebSocket session; resolves with { ws, open, status } once it is open or refused. */
function session(localAddress, onMessage) {
  return new Promise((ok) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { localAddress, maxPayload: 1 << 20 });
    const info = { ws, open: false, status: null, closed: false };
    ws.on('close', () => { if (info.open) live.now -= 1; });
    ws.on('unexpected-response', (_req, res) => { info.status = res.statusCode; res.resume(); ok(info); });
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      if (text?.startsWith('0') && !info.open) {
        info.open = true;
        live.now += 1;
        live.max = Math.max(live.max, live.now);
        ok(info);
      }
      if (text === '2') ws.send('3');
      onMessage?.(text, info);
    });
    ws.on('error', (e) => { info.error = e.message; if (!info.open) ok(info); });
    ws.on('close', () => { info.closed = true; if (!info.open) ok(info); });
  });
}

/** Run `fn(i)` for i in [0, n) with at most `limit` at once. */
async function pool(n, limit, fn, until = Infinity) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, limit) }, async () => {
    while (next < n && Date.now() < until) await fn(next++);
  }));
}

const attacks = {
  // SSE readers that resume a full history, read the first bytes, then stop
  // reading: the node's writes to them wait on full socket buffers.
  // The measurement starts once every stream answered and had `settleMs` to
  // fill its socket: serving 100 backlogs is ordinary work (the same as 100
  // readers resuming); what is under test is holding readers that stalled.
  async sseStall() {
    const conns = [];
    const answered = [];
    await pool(o.count, 50, async (i) => {
      let first;
      answered.push(new Promise((ok) => { first = ok; }));
      const c = await tcp(ip(i), (d, info) => {
        info.status ??= d.toString('latin1').split(' ')[1];
        info.socket.pause();
        first();
      });
      if (!c.opened) { first(); return; }
      c.socket.write(`GET ${o.path}&access_token=${o.tokens[i % o.tokens.length]} HTTP/1.1\r\nHost: portico\r\nLast-Event-ID: ${o.lastEventId}\r\n\r\n`);
      conns.push(c);
    });
    await Promise.all(answered);
    await sleep(o.settleMs);
    started();
    await sleep(o.holdMs);
    const statuses = {};
    for (const c of conns) statuses[c.status] = (statuses[c.status] ?? 0) + 1;
    for (const c of conns) c.socket.destroy();
    finish({ open: conns.length, statuses });
  },

  // Slow Redis: `DEBUG SLEEP` blocks the node's Redis for `sleepSec` at a time, back to back.
  async redisSleep() {
    const { port: rport } = new URL(o.redis);
    const s = net.connect(rport, '127.0.0.1');
    await new Promise((ok) => s.once('connect', ok));
    const reply = () => new Promise((ok) => s.once('data', (d) => ok(d.toString())));
    const arg = String(o.sleepSec);
    started();
    const until = Date.now() + o.holdMs;
    const result = { sent: 0, ok: 0 };
    while (Date.now() < until) {
      const answered = reply();
      s.write(`*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$${arg.length}\r\n${arg}\r\n`);
      result.sent += 1;
      if ((await answered).startsWith('+OK')) result.ok += 1;
    }
    s.destroy();
    finish(result);
  },


  // Connections that send part of a request line and never finish their headers.
  async halfopen() {
    const conns = [];
    await pool(o.count, 200, async (i) => {
      const c = await tcp(ip(i));
      if (c.opened) c.socket.write('GET /healthz HTTP/1.1\r\nHost: portico\r\nX-Slow: ');
      conns.push(c);
    });
    started();
    await sleep(o.holdMs);
    const opened = conns.filter((c) => c.opened);
    const result = {
      attempted: o.count,
      opened: opened.length,
      // Refused at accept: closed well before the header timeout (1 s in the test).
      closedWithin500ms: opened.filter((c) => c.closedAt && c.closedAt - c.openedAt < 500).length,
      closedByServer: opened.filter((c) => c.closedAt).length,
      stillOpen: opened.filter((c) => !c.closedAt).length,
    };
    conns.forEach((c) => c.socket.destroy());
    finish(result);
  },

  // Sessions that never join a namespace and announce a binary packet whose
  // attachments they send only in part.
  async sessions() {
    const all = [];
    await pool(o.count, 100, async (i) => {
      const s = await session(ip(i));
      all.push(s);
      if (!s.open) return;
      const holders = Array.from({ length: o.attachments }, (_, num) => ({ _placeholder: true, num }));
      s.ws.send(`45${o.attachments}-["upload",${JSON.stringify(holders).slice(1, -1)}]`);
      const chunk = Buffer.alloc(o.size, 7);
      for (let k = 0; k < o.attachments - 1; k += 1) s.ws.send(chunk);
    });
    started();
    await sleep(o.holdMs);
    const result = {
      attempted: o.count,
      open: all.filter((s) => s.open).length,
      maxOpenAtOnce: live.max,
      refused503: all.filter((s) => s.status === 503).length,
      otherFailures: all.filter((s) => !s.open && s.status !== 503).length,
      failureKinds: [...new Set(all.filter((s) => !s.open && s.status !== 503).map((s) => s.status ?? s.error))],
      closedByServer: all.filter((s) => s.open && s.closed).length,
    };
    all.forEach((s) => s.ws.terminate());
    finish(result);
  },

  // Thousands of Socket.IO connects in about a second: each session connects
  // to a namespace with a valid token, then leaves at once.
  async storm() {
    let connected = 0;
    let refused = 0;
    let failed = 0;
    const t0 = Date.now();
    started();
    await pool(o.count, o.concurrency ?? 200, async (i) => {
      const s = await session(ip(i), (text, info) => {
        if (!text) return;
        if (text.startsWith('40/echo,')) { connected += 1; info.ws.terminate(); }
        if (text.startsWith('44/echo,')) { refused += 1; info.ws.terminate(); }
      });
      if (!s.open) { failed += 1; return; }
      s.ws.send(`40/echo,${JSON.stringify({ token: o.token })}`);
      await new Promise((ok) => { if (s.closed) ok(); else s.ws.once('close', ok); });
    });
    finish({ attempted: o.count, connected, refused, failed, ms: Date.now() - t0 });
  },

  // Garbage on every layer: bytes that are not HTTP, Engine.IO and Socket.IO
  // packets that do not parse, namespaces that do not exist, bad JSON.
  async malformed() {
    const junk = [
      '4', '9', '4{', '42', '42["', '42[', '4"x"', '45-', '45a-["x"]', '499999999999-[]',
      '40/nope,', `40/${'x'.repeat(5000)},`, '42/echo,["x"]', '41/echo,', '43/echo,1[]',
      '4' + '['.repeat(2000), '42[{"a":' + '['.repeat(5000) + ']', '\u0000\uffff', '6', '5',
    ];
    let sent = 0;
    let sessionsClosed = 0;
    started();
    const until = Date.now() + o.holdMs;
    // `count` at a time, round after round, until `holdMs` is over.
    await pool(Infinity, o.count, async (i) => {
      if (Date.now() > until) return;
      if (i % 5 === 0) {
        const c = await tcp(ip(i));
        if (c.opened) c.socket.end(Buffer.from(`\u0016\u0003\u0001 not http ${i}\r\n\r\n`));
        sent += 1;
        return;
      }
      const s = await session(ip(i));
      if (!s.open) return;
      for (const j of junk) { if (s.ws.readyState === WebSocket.OPEN) { s.ws.send(j); sent += 1; } }
      if (s.ws.readyState === WebSocket.OPEN) s.ws.send(Buffer.from([0xff, 0, 1, 2]));
      await Promise.race([sleep(200), new Promise((ok) => s.ws.once('close', ok))]);
      if (s.closed) sessionsClosed += 1;
      s.ws.terminate();
    }, until);
    finish({ sent, sessionsClosed });
  },

  // Frames and requests over the limits: WebSocket messages past max_payload,
  // long-polling bodies past it, headers past hyper's cap.
  async oversized() {
    const results = { wsClosed: 0, wsTotal: 0, statuses: {} };
    started();
    const big = Buffer.alloc(o.size, 120);
    const until = Date.now() + o.holdMs;
    await pool(Infinity, o.count, async (i) => {
      if (Date.now() > until) return;
      if (i % 3 === 0) {
        const s = await session(ip(i));
        if (!s.open) return;
        results.wsTotal += 1;
        s.ws.send(`42["x","${big.toString()}"]`);
        await Promise.race([sleep(2000), new Promise((ok) => s.ws.once('close', ok))]);
        if (s.closed) results.wsClosed += 1;
        s.ws.terminate();
        return;
      }
      const headers = i % 3 === 1 ? { 'x-big': 'y'.repeat(200000) } : { 'content-type': 'text/plain' };
      const status = await new Promise((ok) => {
        const req = http.request({ host: '127.0.0.1', port, localAddress: ip(i), method: 'POST', path: '/socket.io/?EIO=4&transport=polling', headers, agent: false }, (res) => { res.resume(); ok(res.statusCode); });
        req.on('error', (e) => ok(e.code ?? 'error'));
        if (i % 3 === 2) req.write(big);
        req.end();
      });
      results.statuses[status] = (results.statuses[status] ?? 0) + 1;
    }, until);
    finish(results);
  },
};

if (!attacks[mode]) { console.error(`unknown attack ${mode}`); process.exit(2); }
attacks[mode]().catch((e) => { console.error(e); process.exit(1); });
