/**
 * Seeds an upstream registry with one very large blob (hundreds of MiB to GiB) from a child process, so
 * generating and uploading it leaves no trace in the test process's memory: tests that measure the RSS of
 * the app (which runs inside the jest process) start from an undisturbed baseline.
 *
 * The bytes are AES-128-CTR keystream keyed by the seed (incompressible, reproducible). The blob is
 * uploaded monolithically (POST + PUT ?digest=) to `<registry>/v2/<name>/blobs/uploads/`, which links it
 * to the repository: `GET /v2/<name>/blobs/<digest>` serves it (no manifest needed).
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

const CHILD = `
import { createCipheriv, createHash } from 'node:crypto';
import { request } from 'node:http';
const [registry, name, sizeText, seed] = process.argv.slice(1);
const size = Number(sizeText);
const CHUNK = 1024 * 1024;
function* chunks() {
  const key = createHash('sha256').update('large-blob:' + seed).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const zeros = Buffer.alloc(CHUNK);
  for (let left = size; left > 0; left -= CHUNK) yield cipher.update(zeros.subarray(0, Math.min(CHUNK, left)));
}
function send(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('error', reject);
    if (!body) return req.end();
    const it = body[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const next = it.next();
        if (next.done) return req.end();
        if (!req.write(next.value)) return req.once('drain', pump);
      }
    };
    pump();
  });
}
const hash = createHash('sha256');
for (const c of chunks()) hash.update(c);
const digest = 'sha256:' + hash.digest('hex');
const started = await send('POST', registry + '/v2/' + name + '/blobs/uploads/', { 'content-length': '0' });
if (started.statusCode !== 202) throw new Error('upload start -> ' + started.statusCode);
const location = new URL(started.headers.location, registry);
location.searchParams.set('digest', digest);
const done = await send('PUT', location, { 'content-type': 'application/octet-stream', 'content-length': String(size) }, { [Symbol.iterator]: chunks });
if (done.statusCode !== 201) throw new Error('upload -> ' + done.statusCode);
process.stdout.write(JSON.stringify({ digest, size }));
`;

/** Uploads `size` pseudo-random bytes as a blob of `name` to an auth-less registry; returns its digest. */
export async function pushLargeBlob(registryUrl: string, name: string, size: number, seed = 'large-blob'): Promise<{ digest: string; size: number }> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', CHILD, registryUrl, name, String(size), seed], {
    timeout: 300_000,
    maxBuffer: 1024 * 1024,
  });
  return JSON.parse(stdout) as { digest: string; size: number };
}

/** sha256 of the first `length` bytes of the blob pushLargeBlob makes from `seed`: is what a client got a true prefix? */
export function largeBlobPrefixDigest(seed: string, length: number): string {
  const key = createHash('sha256')
    .update('large-blob:' + seed)
    .digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(1024 * 1024);
  for (let left = length; left > 0; left -= zeros.length) hash.update(cipher.update(zeros.subarray(0, Math.min(zeros.length, left))));
  return `sha256:${hash.digest('hex')}`;
}
