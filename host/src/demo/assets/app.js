// Portico demo page: chat over Socket.IO, a live feed over EventSource, and
// the admin API's plugin list. Tokens come from /demo/session (demo mode only).
'use strict';
const $ = (id) => document.getElementById(id);
let chat, feed, events, session, room;

$('name').value = localStorage.getItem('portico-name') || `guest-${Math.random().toString(36).slice(2, 6)}`;

function item(list, text, cls) {
  const li = document.createElement('li');
  li.textContent = text;
  if (cls) li.className = cls;
  $(list).append(li);
  li.scrollIntoView({ block: 'nearest' });
}

async function connect() {
  const name = $('name').value.trim() || 'guest';
  localStorage.setItem('portico-name', name);
  // An editor token: the feed plugin accepts posts from role `editor` only.
  session = await (await fetch(`/demo/session?name=${encodeURIComponent(name)}&role=editor`)).json();
  [chat, feed].forEach((s) => s && s.close());
  $('messages').innerHTML = '';
  $('feed').innerHTML = '';
  room = undefined;
  if (events) events.close();

  chat = io('/chat', { auth: { token: session.token } });
  chat.on('connect', () => { $('status').textContent = `connected as ${name}`; join(); });
  chat.on('connect_error', (e) => { $('status').textContent = `chat: ${e.message}`; });
  chat.on('message', (m) => item('messages', `${m.from}: ${m.text}`));
  chat.on('portico:disconnect', (d) => item('messages', `disconnected: ${d.reason}`, 'system'));

  // Posting goes over Socket.IO; reading over SSE (both reach channel `news`).
  feed = io('/feed', { auth: { token: session.token } });
  feed.on('connect_error', (e) => { $('feed-status').textContent = `feed: ${e.message}`; });
  events = new EventSource(`/sse/feed?channel=news&access_token=${encodeURIComponent(session.token)}`);
  events.onopen = () => { $('feed-status').textContent = 'live'; };
  events.onerror = () => { $('feed-status').textContent = 'reconnecting (or SSE unavailable)'; };
  // The feed publishes `post {n, title, body, by, at}`; the publish API may send any event.
  const show = (e) => {
    let data;
    try { data = JSON.parse(e.data); } catch { data = e.data; }
    if (data && typeof data === 'object') {
      const by = data.by ? ` (${data.by})` : '';
      item('feed', `${data.title ?? data.text ?? JSON.stringify(data)}${by}`);
    } else item('feed', String(data));
  };
  events.onmessage = show;
  events.addEventListener('post', show);
}

async function join() {
  const next = $('room').value.trim();
  if (!chat || !next) return;
  if (room && room !== next) await chat.emitWithAck('leave', { room });
  const ack = await chat.emitWithAck('join', { room: next });
  room = next;
  item('messages', ack.ok ? `joined ${room}` : `join refused: ${ack.code}`, 'system');
}

async function send(e) {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!chat || !text) return;
  const ack = await chat.emitWithAck('message', { room, text });
  if (ack.ok) { item('messages', `me: ${text}`, 'me'); $('text').value = ''; }
  else item('messages', `not sent: ${ack.code} ${ack.message}`, 'system');
}

async function post(e) {
  e.preventDefault();
  const title = $('post-title').value.trim();
  if (!feed || !title) return;
  const ack = await feed.emitWithAck('post', { channel: 'news', title });
  if (ack && ack.ok === false) $('feed-status').textContent = `not posted: ${ack.code} ${ack.message}`;
  else $('post-title').value = '';
}

async function refreshPlugins() {
  try {
    if (!session || !session.admin_token) throw new Error('start the node with --admin-token');
    const res = await fetch('/admin/v1/plugins', { headers: { authorization: `Bearer ${session.admin_token}` } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const { plugins } = await res.json();
    const p99 = (us) => (us == null ? '' : (us / 1000).toFixed(2));
    $('plugins').replaceChildren(...plugins.map((p) => {
      const tr = document.createElement('tr');
      tr.dataset.plugin = p.name;
      const c = p.counters;
      for (const v of [p.name, p.version, p.connections, c.events, c.errors, p99(c.p99_us)]) {
        const td = document.createElement('td');
        td.textContent = String(v);
        tr.append(td);
      }
      return tr;
    }));
    $('admin-status').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $('admin-status').textContent = `admin API unavailable (${err.message})`;
  }
}

$('connect').onclick = connect;
$('join').onclick = join;
$('send-form').onsubmit = send;
$('post-form').onsubmit = post;
setInterval(refreshPlugins, 2000);
connect().then(refreshPlugins);
