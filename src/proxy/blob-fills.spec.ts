import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from '@jest/globals';
import { waitFor } from '../../test/support/eventually.js';
import { FilesystemBlobStoreDriver } from '../storage/filesystem-blob-store.driver.js';
import { InflightBlobFills, readFill, type BlobFill } from './blob-fills.js';

const root = mkdtempSync(join(tmpdir(), 'cvr-blob-fills-'));
const store = new FilesystemBlobStoreDriver(root);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A fill whose bytes the test appends by hand; `finish()` commits them against `expected`. */
async function manualFill(bytes: Buffer, expected = digestOf(bytes)) {
  const writer = await store.create();
  let finish!: () => Promise<void>;
  const done = new Promise<void>((resolve, reject) => {
    finish = async () => {
      try {
        await writer.commit(expected, bytes.length);
        resolve();
      } catch (err) {
        await writer.cancel();
        reject(err);
      }
    };
  });
  done.catch(() => undefined);
  const fill: BlobFill = {
    key: `1 /x/blobs/${expected}`,
    upstreamId: 1,
    digest: expected,
    size: bytes.length,
    contentType: 'application/octet-stream',
    writer,
    done,
  };
  return { fill, writer, finish };
}

/** Collects a stream: its bytes, and whether it ended or failed. */
function collect(stream: Readable): { stream: Readable; chunks: Buffer[]; outcome: Promise<'ended' | Error> } {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const outcome = new Promise<'ended' | Error>((resolve) => {
    stream.on('end', () => resolve('ended'));
    stream.on('error', (err) => resolve(err));
  });
  return { stream, chunks, outcome };
}

/** Deliberate: lets a reader get as far as it may, to show it stops there (a held-back end is not observable). */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe('readFill', () => {
  it('a range of a running fill is held back at its end until the whole blob is verified', async () => {
    const bytes = randomBytes(300_000);
    const { fill, writer, finish } = await manualFill(bytes);
    await writer.append(bytes.subarray(0, 200_000));
    const range = collect(readFill(fill, 0, 99_999));
    await settle();
    // the range's bytes are all written, yet the stream has not ended: the last chunk waits
    expect(Buffer.concat(range.chunks).length).toBeLessThan(100_000);
    await writer.append(bytes.subarray(200_000));
    await finish();
    expect(await range.outcome).toBe('ended');
    expect(Buffer.concat(range.chunks).equals(bytes.subarray(0, 100_000))).toBe(true);
  });

  it('a range of a fill that turns out wrong fails instead of ending', async () => {
    const bytes = randomBytes(100_000);
    const { fill, writer, finish } = await manualFill(bytes, digestOf(randomBytes(8)));
    await writer.append(bytes);
    const range = collect(readFill(fill, 10, 5_000));
    await settle(); // the fill turns out wrong while the reader waits at its held-back end
    await finish();
    expect(await range.outcome).toBeInstanceOf(Error);
  });

  it('the whole blob ends once committed, and a reader that is destroyed lets go of the growing object', async () => {
    const bytes = randomBytes(64 * 1024);
    const { fill, writer, finish } = await manualFill(bytes);
    await writer.append(bytes.subarray(0, 1000));
    const abandoned = collect(readFill(fill, 0, bytes.length - 1));
    await waitFor('the reader to read what is written and wait for more', () => Buffer.concat(abandoned.chunks).length === 1000);
    abandoned.stream.destroy();
    const whole = collect(readFill(fill, 0, bytes.length - 1));
    await writer.append(bytes.subarray(1000));
    await finish();
    expect(await whole.outcome).toBe('ended');
    expect(digestOf(Buffer.concat(whole.chunks))).toBe(fill.digest);
    expect(abandoned.stream.destroyed).toBe(true);
  });
});

describe('InflightBlobFills', () => {
  it('keeps a key open while its fill runs, reachable by token, and forgets it when the fill settles', async () => {
    const fills = new InflightBlobFills();
    const bytes = randomBytes(1000);
    const { fill, writer, finish } = await manualFill(bytes);
    const pending = fills.open(fill.key, 'token-1');
    expect(fills.find(fill.key)).toBe(pending.started);
    expect(fills.running(fill.key)).toBeUndefined();
    pending.settle({ kind: 'fill', fill });
    expect(fills.running(fill.key)).toBe(fill);
    expect(await fills.byToken('token-1')).toEqual({ kind: 'fill', fill });
    await writer.append(bytes);
    const drained = fills.drain();
    await finish();
    await drained;
    expect([fills.find(fill.key), fills.running(fill.key), fills.byToken('token-1')]).toEqual([undefined, undefined, undefined]);
  });

  it('closes a key at once when its start is not a fill', async () => {
    const fills = new InflightBlobFills();
    fills.open('1 /a', 'token-2').settle({ kind: 'not-here' });
    expect([fills.find('1 /a'), fills.byToken('token-2')]).toEqual([undefined, undefined]);
    await fills.drain();
  });
});
