// A loopback TCP proxy for forcing disconnects: `cut()` drops every open
// connection, `refusing = true` turns new ones away until set back, and
// `target` can be switched to another server (a client moving between nodes).
import net from 'node:net';

/** A TCP proxy whose connections can be cut and refused, to force disconnects. */
export async function proxy(target) {
  const sockets = new Set();
  // `target` may be changed: new connections go to the new one.
  const p = { refusing: false, requests: [], target };
  const server = net.createServer((client) => {
    if (p.refusing) { client.destroy(); return; }
    const { port, hostname } = new URL(p.target);
    const upstream = net.connect(port, hostname);
    sockets.add(client); sockets.add(upstream);
    client.once('data', (d) => p.requests.push(d.toString('latin1')));
    client.pipe(upstream).pipe(client);
    const drop = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', drop); upstream.on('error', drop); client.on('close', drop); upstream.on('close', drop);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  p.url = `http://127.0.0.1:${server.address().port}`;
  p.cut = () => { for (const s of sockets) s.destroy(); sockets.clear(); };
  p.close = () => new Promise((ok) => { p.cut(); server.close(ok); });
  return p;
}

