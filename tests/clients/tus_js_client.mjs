// Uploads each file given on the command line with tus-js-client (Node), as a mobile or
// web app would, and prints one JSON object: {"uploads": [{path, url, resumed_from}]}.
// A path prefixed with "resume:" is interrupted after its first chunk and resumed from
// its stored URL by a new Upload, as an app restarted mid-upload does.
// TUS_PROTOCOL picks the protocol: tus-v1 (the default), or the IETF resumable-upload
// draft as ietf-draft-03 (interop version 5) or ietf-draft-05 (interop version 6).
// Usage: node tus_js_client.mjs ENDPOINT TOKEN CHUNK_SIZE [resume:]PATH...
import { readFileSync } from 'node:fs';
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

const results = [];
for (const arg of paths) {
  const resume = arg.startsWith('resume:');
  const path = resume ? arg.slice('resume:'.length) : arg;
  const file = readFileSync(path);
  const metadata = { filename: basename(path), filetype: 'application/octet-stream' };
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
