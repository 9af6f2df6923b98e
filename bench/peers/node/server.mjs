// Benchmark peer: what a NestJS user runs underneath, a plain Node.js socket.io v4 server
// with the same logic as Portico's `echo` and `chat` plugins and the same HS256 handshake
// check. Run with `PORT=0 BENCH_SECRET=... node server.mjs`; prints `listening on http://...`.

import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Server } from 'socket.io';

const secret = process.env.BENCH_SECRET;
if (!secret) {
  console.error('BENCH_SECRET is required');
  process.exit(2);
}
const host = process.env.HOST ?? '127.0.0.1';
const port = Number(process.env.PORT ?? 0);
const VERSION = '0.1.0';
const MAX_ROOM = 128;
const MAX_NICK = 64;
const MAX_TEXT = 2000;

/** HS256 verification with node's HMAC; the claims on success, an Error otherwise. */
function verify(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) throw new Error('malformed token');
  const [h, p, sig] = parts;
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  if (header.alg !== 'HS256') throw new Error(`algorithm ${header.alg} not accepted`);
  const want = createHmac('sha256', secret).update(`${h}.${p}`).digest();
  const got = Buffer.from(sig, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new Error('bad signature');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number') throw new Error('missing exp');
  if (claims.exp + 30 < now) throw new Error('expired');
  return claims;
}

function tokenOf(socket) {
  const h = socket.handshake;
  if (typeof h.auth?.token === 'string') return h.auth.token;
  const bearer = h.headers.authorization;
  if (typeof bearer === 'string' && bearer.startsWith('Bearer ')) return bearer.slice(7).trim();
  return h.query.token;
}

function authenticate(socket, next) {
  const token = tokenOf(socket);
  if (!token) return next(new Error('unauthorized: no token'));
  try {
    socket.data.claims = verify(token);
    next();
  } catch (e) {
    next(new Error(`unauthorized: ${e.message}`));
  }
}

const http = createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok');
  res.writeHead(404).end();
});
// The same Socket.IO settings as Portico's defaults.
const io = new Server(http, {
  maxHttpBufferSize: 100_000,
  pingInterval: 25_000,
  pingTimeout: 20_000,
  connectTimeout: 45_000,
});

// echo: ack with exactly the event's arguments; emit back when no ack is asked for; an
// acked `emit-and-ack` is emitted back, then acked.
const echo = io.of('/echo');
echo.use(authenticate);
echo.on('connection', (socket) => {
  socket.onAny((event, ...args) => {
    if (typeof args[args.length - 1] === 'function') {
      const ack = args.pop();
      if (event === 'emit-and-ack') socket.emit(event, ...args);
      ack(...args);
    } else {
      socket.emit(event, ...args);
    }
  });
});

// chat: join/leave/nick/message as plugins/chat does (messages go to the room's other members).
const ok = () => ({ ok: true, v: VERSION });
const refuse = (code, message) => ({ ok: false, code, message });
function checkLen(what, value, max) {
  if (typeof value !== 'string') return refuse('bad_request', `${what} is not a string`);
  if (value.length === 0) return refuse('bad_request', `${what} is empty`);
  const len = [...value].length;
  if (len > max) return refuse('bad_request', `${what} is ${len} characters long, the limit is ${max}`);
  return null;
}

const chat = io.of('/chat');
chat.use(authenticate);
chat.use((socket, next) => {
  if (typeof socket.data.claims?.sub !== 'string') return next(new Error('unauthorized: chat needs a signed-in user'));
  next();
});
chat.on('connection', (socket) => {
  const reply = (ack, value) => typeof ack === 'function' && ack(value);
  socket.on('join', (a, ack) => {
    const bad = checkLen('room', a?.room, MAX_ROOM);
    if (bad) return reply(ack, bad);
    socket.join(a.room);
    reply(ack, ok());
  });
  socket.on('leave', (a, ack) => {
    const bad = checkLen('room', a?.room, MAX_ROOM);
    if (bad) return reply(ack, bad);
    socket.leave(a.room);
    reply(ack, ok());
  });
  socket.on('nick', (a, ack) => {
    const bad = checkLen('name', a?.name, MAX_NICK);
    if (bad) return reply(ack, bad);
    socket.data.nick = a.name;
    reply(ack, ok());
  });
  socket.on('message', (a, ack) => {
    const bad = checkLen('room', a?.room, MAX_ROOM) ?? checkLen('text', a?.text, MAX_TEXT);
    if (bad) return reply(ack, bad);
    if (!socket.rooms.has(a.room)) {
      return reply(ack, refuse('not_member', `join room \`${a.room}\` before sending to it`));
    }
    socket.to(a.room).emit('message', { from: socket.data.nick ?? socket.data.claims.sub, room: a.room, text: a.text });
    reply(ack, ok());
  });
});

http.listen(port, host, () => {
  const { address, port: bound } = http.address();
  console.log(`listening on http://${address}:${bound}`);
});
process.on('SIGTERM', () => process.exit(0));
