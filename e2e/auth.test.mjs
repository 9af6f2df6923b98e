// Handshake auth end to end: HS256 / RS256 / ES256 / JWKS keys from a config
// file, a corpus of bad tokens each refused with its code, the three token
// sources, per-namespace auth modes, expiry while connected, and a plugin
// that refuses in on-connect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { writeFileSync, utimesSync } from 'node:fs';
import { startPortico, pluginDir, tempFile, connectError, call, jwt, disconnected, eventually, SECRET, clients } from './fixture.mjs';

const ISS = 'portico-e2e';
const AUD = 'e2e-clients';
const now = () => Math.floor(Date.now() / 1000);
const base = (extra = {}) => ({ iss: ISS, aud: AUD, ...extra });

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwkKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rotated = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPublicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
const hs256 = (unsigned) => `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
const jwks = (...entries) => JSON.stringify({ keys: entries });
const jwkOf = (pair, kid, alg) => ({ ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });

let node;
let jwksPath;
const { open, closeAll } = clients();

before(async () => {
  jwksPath = tempFile('jwks.json', jwks(jwkOf(jwkKey, 'jwk-ec', 'ES256')));
  const rsaPath = tempFile('rsa.pem', rsaPublicPem);
  const config = tempFile('portico.toml', `
[auth]
issuer = "${ISS}"
audience = "${AUD}"
leeway_secs = 0
jwks_file = "${jwksPath}"
jwks_reload_secs = 1

[[auth.keys]]
kid = "rsa1"
alg = "RS256"
pem_file = "${rsaPath}"

[[auth.keys]]
kid = "ec1"
alg = "ES256"
pem = """
${ec.publicKey.export({ type: 'spki', format: 'pem' })}"""

[plugins.gatekeeper.config]
connect = "reject"

[plugins.maybe]
auth = "optional"

[plugins.open]
auth = "none"
`);
  const dir = pluginDir(['echo', 'faulty'], { gatekeeper: 'faulty', maybe: 'faulty', open: 'faulty' });
  node = await startPortico({ dir, args: ['--config', config] });
});
after(async () => { closeAll(); await node.stop(); });

test('valid HS256, RS256, ES256 and JWKS tokens connect, and the plugin sees the subject', async () => {
  const tokens = {
    hs256: jwt(base({ sub: 'hs' })),
    rs256: jwt(base({ sub: 'rs' }), { alg: 'RS256', key: rsa.privateKey, kid: 'rsa1' }),
    es256: jwt(base({ sub: 'es' }), { alg: 'ES256', key: ec.privateKey, kid: 'ec1' }),
    jwks: jwt(base({ sub: 'jwk' }), { alg: 'ES256', key: jwkKey.privateKey, kid: 'jwk-ec' }),
  };
  const subs = { hs256: 'hs', rs256: 'rs', es256: 'es', jwks: 'jwk' };
  for (const [name, token] of Object.entries(tokens)) {
    const s = await open(node.url, '/faulty', { auth: { token } });
    const me = await call(s, 'whoami');
    assert.equal(me.sub, subs[name], name);
    assert.equal(me.id, s.id, `${name}: the plugin sees the client's socket id`);
  }
});

test('the token is also read from an Authorization header and from ?token=', async () => {
  const viaHeader = await open(node.url, '/faulty', {
    auth: {}, extraHeaders: { Authorization: `Bearer ${jwt(base({ sub: 'header' }))}` },
  });
  assert.equal((await call(viaHeader, 'whoami')).sub, 'header');
  const viaQuery = await open(node.url, '/faulty', { auth: {}, query: { token: jwt(base({ sub: 'query' })) } });
  assert.equal((await call(viaQuery, 'whoami')).sub, 'query');
  const bad = await connectError(node.url, '/faulty', { auth: {}, extraHeaders: { Authorization: 'Bearer nope' } });
  assert.match(bad.message, /^token_malformed: /);
});

test('a corpus of bad tokens is refused, each with its code', async () => {
  const good = jwt(base());
  const [head, body, sig] = good.split('.');
  const rsGood = jwt(base(), { alg: 'RS256', key: rsa.privateKey, kid: 'rsa1' });
  const b64 = (v) => Buffer.from(v).toString('base64url');
  const corpus = [
    ['missing', null, 'token_missing'],
    ['garbage', 'garbage', 'token_malformed'],
    ['only two parts', `${head}.${body}`, 'token_malformed'],
    ['alg none', `${b64('{"alg":"none","typ":"JWT"}')}.${body}.`, 'token_algorithm'],
    ['HS256 signed with the RSA public key (alg confusion)',
      jwt(base(), { alg: 'HS256', key: rsaPublicPem, kid: 'rsa1' }), 'token_algorithm'],
    ['wrong secret', jwt(base(), { key: 'not-the-secret' }), 'token_bad_signature'],
    ['expired', jwt(base({ exp: now() - 10 })), 'token_expired'],
    ['nbf in the future', jwt(base({ nbf: now() + 600 })), 'token_not_yet_valid'],
    ['wrong iss', jwt(base({ iss: 'someone-else' })), 'token_wrong_issuer'],
    ['wrong aud', jwt(base({ aud: 'other-app' })), 'token_wrong_audience'],
    ['unknown kid', jwt(base(), { alg: 'RS256', key: rotated.privateKey, kid: 'rsa-retired' }), 'token_unknown_key'],
    ['truncated HS signature', good.slice(0, -3), 'token_bad_signature'],
    ['truncated RS signature', rsGood.slice(0, -10), 'token_bad_signature'],
    ['empty signature', `${head}.${body}.`, 'token_bad_signature'],
    // Correctly signed with the right secret, but the claims are not JSON.
    ['claims not JSON', hs256(`${head}.${b64('this is not json')}`), 'token_malformed'],
    ['payload swapped under a valid signature', `${head}.${b64(JSON.stringify(base({ sub: 'mallory' })))}.${sig}`, 'token_bad_signature'],
    ['no exp', jwt(base({ exp: undefined })), 'token_missing_claim'],
  ];
  assert.ok(corpus.length >= 12);
  for (const [what, token, code] of corpus) {
    const err = await connectError(node.url, '/faulty', { auth: token === null ? {} : { token } });
    assert.match(err.message, new RegExp(`^${code}: .+`), what);
  }
  // The node still serves good tokens afterwards.
  const s = await open(node.url, '/faulty', { auth: { token: jwt(base()) } });
  assert.equal((await call(s, 'ok')).ok, true);
});

test('a JWKS key added to the file is picked up without a restart', async () => {
  const token = jwt(base({ sub: 'rotated' }), { alg: 'RS256', key: rotated.privateKey, kid: 'rsa-next' });
  const before = await connectError(node.url, '/faulty', { auth: { token } });
  assert.match(before.message, /^token_unknown_key: /);
  writeFileSync(jwksPath, jwks(jwkOf(jwkKey, 'jwk-ec', 'ES256'), jwkOf(rotated, 'rsa-next', 'RS256')));
  // The file is checked at most once a second; a future mtime makes the change visible
  // even on a file system with coarse timestamps.
  const later = new Date(Date.now() + 5000);
  utimesSync(jwksPath, later, later);
  // The node re-reads the file lazily, when a token is checked at least a second after
  // the last look: nothing to await but a connect that succeeds, so poll with connects.
  // Any refusal but token_unknown_key ends the poll and fails below.
  const outcome = await eventually('the new JWKS key to be picked up', async () => {
    try {
      return { socket: await open(node.url, '/faulty', { auth: { token } }) };
    } catch (err) {
      return /^token_unknown_key: /.test(err.message) ? null : { err };
    }
  }, { timeout: 5000, every: 200 });
  assert.equal(outcome.err, undefined, String(outcome.err));
  assert.equal((await call(outcome.socket, 'whoami')).sub, 'rotated');
  assert.match(node.logs(), /JWKS reloaded/);
});

test('auth modes per namespace: optional verifies a token when present, none ignores it', async () => {
  const anon = await open(node.url, '/maybe', { auth: {} });
  assert.equal((await call(anon, 'whoami')).sub, null);
  const signed = await open(node.url, '/maybe', { auth: { token: jwt(base({ sub: 'bob' })) } });
  assert.equal((await call(signed, 'whoami')).sub, 'bob');
  const bad = await connectError(node.url, '/maybe', { auth: { token: jwt(base({ exp: now() - 10 })) } });
  assert.match(bad.message, /^token_expired: /);

  const free = await open(node.url, '/open', { auth: { token: 'garbage' } });
  assert.equal((await call(free, 'whoami')).sub, null);
  // Required (the default) still refuses anonymous clients.
  assert.match((await connectError(node.url, '/faulty', { auth: {} })).message, /^token_missing: /);
});

test('token deadlines of several sockets: a shorter one added later still expires first, on time', async () => {
  const later = await open(node.url, '/echo', { auth: { token: jwt(base({ exp: now() + 7 })) } });
  const t0 = Date.now();
  const sooner = await open(node.url, '/echo', { auth: { token: jwt(base({ exp: now() + 2 })) } });
  const first = await disconnected(sooner, 8000);
  assert.deepEqual(first.told, { reason: 'token_expired' });
  // Not held until the earlier-registered, later deadline.
  assert.ok(Date.now() - t0 < 4500, `expired after ${Date.now() - t0} ms`);
  assert.equal(later.connected, true);
  const second = await disconnected(later, 9000);
  assert.deepEqual(second.told, { reason: 'token_expired' });
});

test('a plugin that refuses in on-connect: connect_error carries its code and reason', async () => {
  const err = await connectError(node.url, '/gatekeeper', { auth: { token: jwt(base()) } });
  assert.equal(err.message, 'forbidden: faulty refuses connections');
});

test('a token that expires while connected: the server disconnects the client with reason token_expired', async () => {
  const s = await open(node.url, '/echo', { auth: { token: jwt(base({ exp: now() + 2 })) } });
  const gone = disconnected(s, 8000);
  assert.deepEqual(await call(s, 'still-here', 1), 1);
  const { reason, told } = await gone;
  assert.equal(reason, 'io server disconnect');
  assert.deepEqual(told, { reason: 'token_expired' });
  // A token that does not expire soon keeps its connection.
  const other = await open(node.url, '/echo', { auth: { token: jwt(base()) } });
  assert.deepEqual(await call(other, 'x', 2), 2);
});
