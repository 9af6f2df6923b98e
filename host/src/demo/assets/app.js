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
  session = await (await fetch(`/demo/session?name=${encodeURIComponent(name)}`)).json();
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

  feed = io('/feed', { auth: { token: session.token } });
  feed.on('connect_error', (e) => { $('feed-status').textContent = `feed: ${e.message}`; });
  events = new EventSource(`/sse/feed?channel=news&access_token=${encodeURIComponent(session.token)}`);
  events.onopen = () => { $('feed-status').textContent = 'live'; };
  events.onerror = () => { $('feed-status').textContent = 'reconnecting (or SSE unavailable)'; };
  const show = (e) => {
    let data;
    try { data = JSON.parse(e.data); } catch { data = e.data; }
    item('feed', typeof data === 'object' ? (data.title ?? data.text ?? JSON.stringify(data)) : String(data));
  };
  events.onmessage = show;
  ['post', 'item', 'news', 'notification'].forEach((name) => events.addEventListener(name, show));
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
  if (ack && ack.ok === false) $('feed-status').textContent = `not posted: ${ack.code}`;
  else $('post-title').value = '';
}

async function refreshPlugins() {
  try {
    const headers = session && session.admin_token ? { authorization: `Bearer ${session.admin_token}` } : {};
    const res = await fetch('/admin/v1/plugins', { headers });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    const rows = (body.plugins ?? body).map((p) => {
      const c = p.counters ?? {};
      const cells = [p.name, p.version ?? p.active_version, c.connections, c.events, c.errors, c.p99_ms];
      return `<tr>${cells.map((v) => `<td>${v ?? ''}</td>`).join('')}</tr>`;
    });
    $('plugins').innerHTML = rows.join('');
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
