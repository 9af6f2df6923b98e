// Run with: node bench-sse.mjs [streams] [events]  (after `make plugins build`; not a test)
//
// SSE fan-out on one node: `streams` HTTP/1.1 readers on one channel, `events`
// publications through the publish API (8 in flight); reports deliveries per second.
import http from 'node:http';
import { startPortico, token } from './fixture.mjs';

const STREAMS = Number(process.argv[2] ?? 500);
const EVENTS = Number(process.argv[3] ?? 200);
const KEY = 'bench-key';
const node = await startPortico({ plugins: ['feed'], args: ['--api-key', KEY], env: { PORTICO_LOG: 'warn', PORTICO_SSE__BUFFER: '1024' } });
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const t = token({ sub: 'bench' });
let delivered = 0;
let lastAt = 0;
const open = () => new Promise((ok, fail) => {
  http.get(`${node.url}/sse/feed?channel=news&access_token=${t}`, { agent }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (d) => {
      const n = d.split('\nevent: post').length - 1;
      if (n) { delivered += n; lastAt = performance.now(); }
    });
    ok(res);
  }).on('error', fail);
});
const streams = [];
for (let i = 0; i < STREAMS; i++) streams.push(await open());
const start = performance.now();
let next = 0;
const body = JSON.stringify({ plugin: 'feed', channel: 'news', event: 'post', data: { title: 'x'.repeat(100) } });
await Promise.all(Array.from({ length: 8 }, async () => {
  while (next < EVENTS) {
    next += 1;
    const r = await fetch(`${node.url}/api/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body });
    await r.arrayBuffer();
  }
}));
const published = performance.now();
while (delivered < STREAMS * EVENTS) await new Promise((ok) => setTimeout(ok, 10));
const secs = (lastAt - start) / 1000;
console.log(`${STREAMS} streams x ${EVENTS} events: ${delivered} deliveries in ${secs.toFixed(2)} s = ${Math.round(delivered / secs)}/s; publishing took ${((published - start) / 1000).toFixed(2)} s (${Math.round(EVENTS / ((published - start) / 1000))} publishes/s)`);
streams.forEach((s) => s.destroy());
agent.destroy();
await node.stop();
