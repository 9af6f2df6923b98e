// A raw HTTP/1.1 SSE reader shared by the SSE tests: frames, waiting, ending.
import http from 'node:http';

/** Parse SSE frames out of a text stream; calls `onFrame({id, event, data, comment, retry})`. */
export function sseParser(onFrame) {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const frame = { data: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) frame.comment = line.slice(1).trim();
        else {
          const c = line.indexOf(':');
          const [k, v] = c < 0 ? [line, ''] : [line.slice(0, c), line.slice(c + 1).replace(/^ /, '')];
          if (k === 'data') frame.data.push(v);
          else frame[k] = v;
        }
      }
      frame.data = frame.data.length ? frame.data.join('\n') : undefined;
      onFrame(frame);
    }
  };
}

/**
 * A raw HTTP/1.1 SSE reader. `frames` collects every frame; `waitFor(pred)`
 * resolves with the first frame (past or future) matching; `ended` resolves
 * when the server ends the response.
 */
export function openStream(url, path, { headers = {}, paused = false, cleanup = [] } = {}) {
  return new Promise((ok, fail) => {
    const req = http.get(`${url}${path}`, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const s = { res, status: res.status, frames: [], waiters: [], text: '' };
      s.status = res.statusCode;
      s.ended = new Promise((done) => { res.on('end', done); res.on('close', done); });
      s.waitFor = (pred, what = 'frame') => {
        const found = s.frames.find(pred);
        if (found) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
          s.waiters.push({ pred, resolve });
          s.ended.then(() => reject(new Error(`stream ended before ${what}`)));
        });
      };
      s.close = () => req.destroy();
      res.setEncoding('utf8');
      const parse = sseParser((f) => {
        s.frames.push(f);
        s.waiters = s.waiters.filter((w) => (w.pred(f) ? (w.resolve(f), false) : true));
      });
      res.on('data', (d) => { s.text += s.status === 200 ? '' : d; if (s.status === 200) parse(d); });
      if (paused) res.pause();
      cleanup.push(async () => req.destroy());
      if (s.status !== 200) res.on('end', () => { s.json = JSON.parse(s.text); ok(s); });
      else ok(s);
    });
    req.on('error', fail);
  });
}

