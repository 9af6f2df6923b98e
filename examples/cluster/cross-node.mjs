// Run with: npm install socket.io-client && node cross-node.mjs "$TOKEN"  (three nodes up, see README "Scaling out")
// Two clients on two nodes: a message crosses nodes through Redis.
import { io } from 'socket.io-client';
const [token] = process.argv.slice(2);
const connect = (port) => io(`http://127.0.0.1:${port}/chat`, { auth: { token }, transports: ['websocket'] });
const a = connect(8081), b = connect(8083);
await Promise.all([a, b].map((s) => s.emitWithAck('join', { room: 'lobby' })));
b.on('message', (m) => { console.log(`node 3 got: ${m.from}: ${m.text}`); process.exit(0); });
await a.emitWithAck('message', { room: 'lobby', text: 'hello from node 1' });
