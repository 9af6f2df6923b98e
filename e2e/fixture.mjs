// Shared fixture: start the real `portico` binary on port 0 with a chosen set
// of plugins, mint tokens, and connect official socket.io clients.
import { spawn } from 'node:child_process';
import { createHmac, sign as cryptoSign } from 'node:crypto';
import { mkdtempSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { io } from 'socket.io-client';

export const BIN = resolve(process.env.PORTICO_BIN ?? '../target/debug/portico');
export const PLUGIN_DIR = resolve(process.env.PORTICO_PLUGIN_DIR ?? '../target/wasm32-wasip2/plugin');
export const SECRET = 'e2e-secret';
// Compiled plugins are cached across the servers the tests start (keyed by
// wasm hash + engine settings), so each start does not recompile them.
export const CACHE_DIR = join(tmpdir(), 'portico-e2e-cache');
/** The `--admin-token` the tests start nodes with when they use the admin API. */
export const ADMIN_TOKEN = 'e2e-admin-token';

/** The bytes of a built plugin (e.g. 'chat'), to upload through the admin API. */
export const wasm = (name) => readFileSync(join(PLUGIN_DIR, `${name}.wasm`));

/**
 * A directory holding copies of the named plugins (e.g. ['chat', 'echo']);
 * `aliases` serves a plugin under another name too (e.g. { chat2: 'chat' }).
 */
export function pluginDir(names, aliases = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'portico-plugins-'));
  for (const [name, from] of [...names.map((n) => [n, n]), ...Object.entries(aliases)]) {
    const src = join(PLUGIN_DIR, `${from}.wasm`);
    if (!existsSync(src)) throw new Error(`${src} is missing: run \`make plugins\``);
    copyFileSync(src, join(dir, `${name}.wasm`));
  }
  return dir;
}

/** Write `text` to a fresh temporary file (config, PEM, JWKS); returns its path. */
export function tempFile(name, text) {
  const path = join(mkdtempSync(join(tmpdir(), 'portico-e2e-')), name);
  writeFileSync(path, text);
  return path;
}

/**
 * Start portico; resolves once it prints `listening on http://HOST:PORT`.
 * Returns { url, proc, pluginPath, logs(), logged(pattern, ms), stop() }:
 * `logged` resolves with the match once the node's log (stderr, so far or later)
 * matches `pattern`, and rejects after `ms` or if the node exits first; give it a
 * pattern that names what is awaited (plugin, version) so an earlier line does not match.
 */
export async function startPortico({ plugins = ['chat', 'echo', 'faulty'], args = [], env = {}, dir } = {}) {
  const pluginPath = dir ?? pluginDir(plugins);
  // --dev: the tests' short HS256 secrets (refused otherwise).
  const proc = spawn(BIN, ['serve', '--dev', '--listen', '127.0.0.1:0', '--plugins', pluginPath, '--jwt-secret', SECRET, ...(args.includes('--cache-dir') ? [] : ['--cache-dir', CACHE_DIR]), ...args], {
    env: { ...process.env, PORTICO_LOG: process.env.E2E_LOG ?? 'info', RUST_BACKTRACE: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  const logWaiters = new Set();
  proc.stderr.on('data', (d) => {
    logs += d;
    for (const w of logWaiters) w();
  });
  const url = await new Promise((ok, fail) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (https?:\/\/\S+)/);
      if (m) ok(m[1]);
    });
    proc.on('exit', (code) => fail(new Error(`portico exited with ${code} before listening:\n${logs}`)));
  });
  return {
    url,
    proc,
    pluginPath,
    logs: () => logs,
    logged: (pattern, ms = 10000) => new Promise((ok, fail) => {
      const done = (settle) => { clearTimeout(timer); logWaiters.delete(check); proc.off('exit', exited); settle(); };
      const check = () => { const m = logs.match(pattern); if (m) done(() => ok(m)); };
      const exited = () => done(() => fail(new Error(`portico exited before logging ${pattern}:\n${logs}`)));
      const timer = setTimeout(() => done(() => fail(new Error(`no log line ${pattern} within ${ms} ms:\n${logs}`))), ms);
      logWaiters.add(check);
      proc.once('exit', exited);
      check();
    }),
    stop: () => new Promise((ok) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return ok(proc.exitCode);
      proc.once('exit', ok);
      proc.kill('SIGTERM');
    }),
  };
}

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT; `claims` override the defaults (sub, exp in 1h). */
export function token(claims = {}, { secret = SECRET, header = { alg: 'HS256', typ: 'JWT' } } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { sub: 'alice', iat: now, exp: now + 3600, ...claims };
  const unsigned = `${b64url(header)}.${b64url(body)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/**
 * A JWT signed with any algorithm node:crypto knows: HS* with a secret,
 * RS256/ES256 (any RS or ES) with a private key (ES signatures in JOSE's raw r||s form).
 */
export function jwt(claims, { alg = 'HS256', key = SECRET, kid, header = {} } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { sub: 'alice', iat: now, exp: now + 3600, ...claims };
  const unsigned = `${b64url({ alg, typ: 'JWT', ...(kid ? { kid } : {}), ...header })}.${b64url(body)}`;
  const hash = `sha${alg.slice(2)}`;
  let sig;
  if (alg.startsWith('HS')) sig = createHmac(hash, key).update(unsigned).digest();
  else if (alg.startsWith('RS')) sig = cryptoSign(hash, Buffer.from(unsigned), key);
  else if (alg.startsWith('ES')) sig = cryptoSign(hash, Buffer.from(unsigned), { key, dsaEncoding: 'ieee-p1363' });
  else throw new Error(`jwt(): unsupported alg ${alg}`);
  return `${unsigned}.${sig.toString('base64url')}`;
}

/** Resolve with the disconnect reason of `socket` (and what `portico:disconnect` said first, if anything). */
export function disconnected(socket, ms = 10000) {
  return new Promise((ok, fail) => {
    let told = null;
    const timer = setTimeout(() => fail(new Error(`no disconnect within ${ms} ms`)), ms);
    socket.on('portico:disconnect', (info) => { told = info; });
    socket.once('disconnect', (reason) => { clearTimeout(timer); ok({ reason, told }); });
  });
}

/** Connect a client; resolves with the socket once connected, rejects on connect_error. */
export function connect(url, ns, { auth = { token: token() }, ...opts } = {}) {
  return new Promise((ok, fail) => {
    const socket = io(`${url}${ns}`, { auth, reconnection: false, forceNew: true, transports: ['websocket'], ...opts });
    socket.once('connect', () => ok(socket));
    socket.once('connect_error', (err) => { socket.close(); fail(err); });
  });
}

/** The error a connection attempt fails with (fails the test if it connects). */
export async function connectError(url, ns, opts) {
  try {
    const s = await connect(url, ns, opts);
    s.close();
  } catch (err) {
    return err;
  }
  throw new Error(`connecting to ${ns} should have failed`);
}

/** Emit with an ack and resolve with the ack's arguments (array). */
export function call(socket, event, ...args) {
  return socket.timeout(5000).emitWithAck(event, ...args).then(
    (first) => first,
  );
}

/** Resolve with the args of the next `event` on `socket`. */
export function next(socket, event, ms = 5000) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (...args) => { clearTimeout(timer); ok(args); });
  });
}

/** Resolve with the args of the first `event` whose first argument satisfies `pred`. */
export function nextWhere(socket, event, pred, ms = 5000) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { socket.off(event, on); fail(new Error(`no matching ${event} within ${ms} ms`)); }, ms);
    function on(...args) {
      if (!pred(args[0])) return;
      clearTimeout(timer);
      socket.off(event, on);
      ok(args);
    }
    socket.on(event, on);
  });
}

/**
 * Resolve with the first truthy value of `check()` (a failing check counts as falsy),
 * polled every `every` ms; reject after `timeout` ms naming `what`.
 * For states that have no event to await (a gauge, a record in Redis).
 */
export async function eventually(what, check, { timeout = 10000, every = 25 } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await Promise.resolve().then(check).catch(() => null);
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * Across nodes, a room's subscriptions may still be settling: call `send(i)` until
 * `receiver` gets `event` (each attempt waits for it 400 ms). Resolves with its first argument.
 */
export async function deliveredAcross(receiver, event, send, withinMs) {
  const deadline = Date.now() + withinMs;
  for (let i = 0; Date.now() < deadline; i++) {
    const got = next(receiver, event, 400).catch(() => null);
    await send(i);
    const msg = await got;
    if (msg) return msg[0];
  }
  throw new Error(`no cross-node ${event} within ${withinMs} ms`);
}

/**
 * Connected clients that `closeAll()` closes: `const { open, openAs, closeAll } = clients();`.
 * `open` takes `connect()`'s arguments; `openAs(node, ns, sub, claims)` connects to a
 * started node (or a URL) with a token for `sub` (default 'alice') and extra `claims`;
 * `sockets` lists them in the order they were opened.
 */
export function clients() {
  const sockets = [];
  const open = async (...a) => { const s = await connect(...a); sockets.push(s); return s; };
  return {
    open,
    openAs: (node, ns, sub = 'alice', claims = {}) => open(node.url ?? node, ns, { auth: { token: token({ sub, ...claims }) } }),
    sockets,
    closeAll: () => sockets.forEach((s) => s.close()),
  };
}

/**
 * Started nodes that `stopAll()` stops: `const { start, stopAll } = nodes(defaults)`;
 * `start(opts)` is `startPortico` with `opts` over `defaults` (`env` merged, `args` appended).
 */
export function nodes(defaults = {}) {
  const started = [];
  return {
    start: async (opts = {}) => {
      const node = await startPortico({
        ...defaults,
        ...opts,
        env: { ...defaults.env, ...opts.env },
        args: [...(defaults.args ?? []), ...(opts.args ?? [])],
      });
      started.push(node);
      return node;
    },
    stopAll: () => Promise.all(started.map((n) => n.stop())),
  };
}

/**
 * A promise that the test settles itself when something it counts happens:
 * `const enough = signal('200 acks'); ... enough.resolve(); await enough.promise`.
 * Rejects after `ms` naming `what`.
 */
export function signal(what, ms = 10000) {
  let resolve;
  const promise = new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    resolve = (value) => { clearTimeout(timer); ok(value); };
  });
  return { promise, resolve };
}

/**
 * A request to `node`'s admin API (`/admin/v1` + `path`) with the admin token
 * (`auth: null` sends none); resolves with { status, body } (body: the parsed JSON, or null).
 */
export async function admin(node, method, path, { body, query = '', auth = ADMIN_TOKEN, type = 'application/wasm' } = {}) {
  const headers = {};
  if (auth !== null) headers.authorization = `Bearer ${auth}`;
  if (body !== undefined) headers['content-type'] = type;
  const res = await fetch(`${node.url}/admin/v1${path}${query ? `?${query}` : ''}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Upload `bytes` as plugin `name` (PUT); `query` e.g. 'config.version=2.0.0' or 'canary=50'. */
export const deploy = (node, name, bytes, query) => admin(node, 'PUT', `/plugins/${name}`, { body: bytes, query });
/** Roll plugin `name` back to its previous revision, or to `to` (a version or a revision id). */
export const rollback = (node, name, to) => admin(node, 'POST', `/plugins/${name}/rollback`, { query: to === undefined ? '' : `to=${to}` });
/** Promote plugin `name`'s canary. */
export const promote = (node, name) => admin(node, 'POST', `/plugins/${name}/promote`);
/** What the admin API says of plugin `name` (the body of GET /plugins/:name). */
export const pluginInfo = async (node, name) => (await admin(node, 'GET', `/plugins/${name}`)).body;
