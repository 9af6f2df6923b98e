// A private redis-server per test, on a free loopback port (never 6379's).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => ok(port)); });
  });
}

/**
 * Start redis-server; resolves once it accepts connections. `restart()` keeps the port.
 * `debug`: allow `DEBUG` commands from loopback (a test makes Redis slow with `DEBUG SLEEP`).
 */
export async function startRedis({ debug = false } = {}) {
  const port = await freePort();
  let proc;
  const launch = () => new Promise((ok, fail) => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    if (debug) args.push('--enable-debug-command', 'local');
    proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; if (/Ready to accept connections/.test(out)) ok(); });
    proc.once('exit', (code) => fail(new Error(`redis-server exited with ${code}: ${out}`)));
    proc.once('error', fail);
  });
  const stop = () => new Promise((ok) => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return ok();
    proc.once('exit', () => ok());
    proc.kill('SIGKILL');
  });
  await launch();
  return { url: `redis://127.0.0.1:${port}/`, port, stop, restart: async () => { await stop(); await launch(); } };
}
