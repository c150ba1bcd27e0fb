// Uploads each file given on the command line with tus-js-client (Node), as a mobile or
// web app would, and prints one JSON object: {"uploads": [{path, url, resumed_from}]}.
// A path prefixed with "resume:" is interrupted after its first chunk and resumed from
// its stored URL by a new Upload, as an app restarted mid-upload does. One prefixed with
// "stall:" goes through a loopback proxy that, halfway through the second chunk, stops
// forwarding that connection without closing its server side (a phone that changed
// networks leaves the server such a half-open connection); the app then gives up on the
// request and resumes, and the report's resumed_from is the offset its first PATCH sent.
// TUS_PROTOCOL picks the protocol: tus-v1 (the default), or the IETF resumable-upload
// draft as ietf-draft-03 (interop version 5) or ietf-draft-05 (interop version 6).
// Usage: node tus_js_client.mjs ENDPOINT TOKEN CHUNK_SIZE [resume:]PATH...
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { basename } from 'node:path';
import * as tus from 'tus-js-client';

const [endpoint, token, chunkSizeArg, ...paths] = process.argv.slice(2);
const chunkSize = Number(chunkSizeArg);

function run(file, options) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(file, {
      endpoint,
      chunkSize,
      protocol: process.env.TUS_PROTOCOL || 'tus-v1',
      retryDelays: [0, 200, 500],
      headers: { Authorization: `Bearer ${token}` },
      ...options,
      onError: reject,
      onSuccess: () => resolve(upload),
    });
    if (options.abortAfterFirstChunk) {
      upload.options.onChunkComplete = (_size, accepted) => {
        upload.abort().then(() => resolve({ url: upload.url, accepted }));
      };
    }
    upload.start();
  });
}

// A TCP proxy to `target` (a URL) on a loopback port. Once `stallAfter` bytes have gone
// through it towards the server (every connection counted), the connection carrying the
// next byte stops forwarding in both directions and its server side is left open for as long
// as this process runs; `stalled` resolves then. Later connections are forwarded whole.
function stallingProxy(target, stallAfter) {
  const { hostname, port } = new URL(target);
  let forwarded = 0;
  let armed = true;
  let onStall;
  const stalled = new Promise((resolve) => { onStall = resolve; });
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    let frozen = false;
    client.on('data', (data) => {
      if (frozen) return;
      if (armed && forwarded + data.length > stallAfter) {
        upstream.write(data.subarray(0, stallAfter - forwarded));
        frozen = true;
        armed = false;
        onStall();
        return;
      }
      forwarded += data.length;
      upstream.write(data);
    });
    upstream.on('data', (data) => { if (!frozen) client.write(data); });
    client.on('close', () => { if (!frozen) upstream.end(); });
    upstream.on('close', () => client.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      server.unref();
      resolve({ endpoint: `http://127.0.0.1:${server.address().port}${new URL(target).pathname}`, stalled });
    });
  });
}

// Uploads `file` through a stalling proxy, gives up on the stalled request as an app told of
// a network change does, and resumes from the upload's URL; resolves with the URL and the
// offset the resumed upload's first PATCH sent.
async function stallAndResume(file, metadata) {
  const proxy = await stallingProxy(endpoint, chunkSize + chunkSize / 2);
  const first = new tus.Upload(file, {
    endpoint: proxy.endpoint,
    chunkSize,
    protocol: process.env.TUS_PROTOCOL || 'tus-v1',
    retryDelays: [],
    headers: { Authorization: `Bearer ${token}` },
    metadata,
    onError: () => {},
  });
  first.start();
  await proxy.stalled;
  // Give the request a moment to stall on the server, then give up on it.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await first.abort();
  let resumedFrom = null;
  const resumed = await run(file, {
    endpoint: proxy.endpoint,
    metadata,
    uploadUrl: first.url,
    onBeforeRequest: (req) => {
      if (resumedFrom === null && req.getMethod() === 'PATCH') resumedFrom = Number(req.getHeader('Upload-Offset'));
    },
  });
  if (resumed.url !== first.url) throw new Error('resumed into a new upload');
  // The upload's URL on the server itself: the proxy goes with this process.
  const url = resumed.url.replace(new URL(proxy.endpoint).origin, new URL(endpoint).origin);
  return { url, resumedFrom };
}

const results = [];
for (const arg of paths) {
  const [, mode, path] = arg.match(/^(?:(resume|stall):)?(.*)$/s);
  const resume = mode === 'resume';
  const file = readFileSync(path);
  const metadata = { filename: basename(path), filetype: 'application/octet-stream' };
  if (mode === 'stall') {
    const { url, resumedFrom } = await stallAndResume(file, metadata);
    results.push({ path, url, resumed_from: resumedFrom });
    continue;
  }
  if (!resume) {
    const upload = await run(file, { metadata });
    results.push({ path, url: upload.url, resumed_from: 0 });
    continue;
  }
  const interrupted = await run(file, { metadata, abortAfterFirstChunk: true });
  const resumed = await run(file, { metadata, uploadUrl: interrupted.url });
  if (resumed.url !== interrupted.url) throw new Error('resumed into a new upload');
  results.push({ path, url: resumed.url, resumed_from: interrupted.accepted });
}
console.log(JSON.stringify({ uploads: results }));
