import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digest, DigestVerifier, digestStream } from './digest.js';
import { OciError, OciErrorCode } from './oci-error.js';

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const HELLO_SHA256 = 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';
const SHA512_HEX = 'a'.repeat(128);

function expectDigestInvalid(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(OciError);
    expect((err as OciError).code).toBe(OciErrorCode.DIGEST_INVALID);
    expect((err as OciError).status).toBe(400);
    return;
  }
  throw new Error('expected DIGEST_INVALID');
}

/** A sink that discards bytes and counts them. */
function sink(): Writable & { received: number } {
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      w.received += chunk.length;
      cb();
    },
  }) as Writable & { received: number };
  w.received = 0;
  return w;
}

describe('Digest', () => {
  it('parses sha256 and exposes algorithm, hex and string form', () => {
    const d = Digest.parse(HELLO_SHA256);
    expect(d.algorithm).toBe('sha256');
    expect(d.hex).toBe(HELLO_SHA256.slice(7));
    expect(d.toString()).toBe(HELLO_SHA256);
    expect(`${d}`).toBe(HELLO_SHA256);
    expect(JSON.stringify({ d })).toBe(`{"d":"${HELLO_SHA256}"}`);
    expect(d.isSupported).toBe(true);
  });

  it('parses sha512 but marks it unsupported', () => {
    const d = Digest.parse(`sha512:${SHA512_HEX}`);
    expect(d.algorithm).toBe('sha512');
    expect(d.isSupported).toBe(false);
  });

  it.each([
    '',
    'sha256',
    'sha256:',
    HELLO_SHA256.toUpperCase(),
    HELLO_SHA256.replace('2cf2', '2CF2'),
    HELLO_SHA256.slice(0, -1),
    `${HELLO_SHA256}0`,
    `${HELLO_SHA256}\n`,
    ` ${HELLO_SHA256}`,
    HELLO_SHA256.replace('sha256', 'SHA256'),
    HELLO_SHA256.replace('sha256', 'md5'),
    `sha512:${'a'.repeat(64)}`,
    `sha256:${SHA512_HEX}`,
    `sha256:${'g'.repeat(64)}`,
    'sha256-' + HELLO_SHA256.slice(7),
    `sha256:${HELLO_SHA256}`,
  ])('rejects %j with DIGEST_INVALID', (value) => {
    expectDigestInvalid(() => Digest.parse(value));
    expect(Digest.tryParse(value)).toBeUndefined();
    expect(Digest.isValid(value)).toBe(false);
  });

  it('rejects non-strings without a TypeError', () => {
    expectDigestInvalid(() => Digest.parse(undefined as unknown as string));
    expectDigestInvalid(() => Digest.parse(42 as unknown as string));
  });

  it('makes a BullMQ-safe job key', () => {
    const key = Digest.parse(HELLO_SHA256).jobKey();
    expect(key).toBe(`sha256-${HELLO_SHA256.slice(7)}`);
    expect(key).not.toContain(':');
  });

  it('compares with digests and strings', () => {
    const d = Digest.parse(HELLO_SHA256);
    expect(d.equals(Digest.parse(HELLO_SHA256))).toBe(true);
    expect(d.equals(HELLO_SHA256)).toBe(true);
    expect(d.equals(EMPTY_SHA256)).toBe(false);
    expect(d.equals(Digest.parse(EMPTY_SHA256))).toBe(false);
    expect(d.equals(undefined)).toBe(false);
  });

  it('is computed from a hash or from bytes', () => {
    expect(Digest.fromHash(createHash('sha256').update('hello')).toString()).toBe(HELLO_SHA256);
    expect(Digest.of(Buffer.from('hello')).toString()).toBe(HELLO_SHA256);
    expect(Digest.of('').toString()).toBe(EMPTY_SHA256);
    const sha512 = Digest.fromHash(createHash('sha512').update('hello'), 'sha512');
    expect(sha512.algorithm).toBe('sha512');
    expect(sha512.hex).toHaveLength(128);
    expect(() => Digest.fromHash(createHash('sha1').update('x'))).toThrow(TypeError);
  });
});

describe('DigestVerifier', () => {
  it('passes bytes through unchanged and reports their digest and count', async () => {
    const verifier = digestStream();
    const chunks: Buffer[] = [];
    await pipeline(
      Readable.from([Buffer.from('hel'), Buffer.from('lo')]),
      verifier,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          chunks.push(chunk);
          cb();
        },
      }),
    );
    expect(Buffer.concat(chunks).toString()).toBe('hello');
    expect(verifier.digest().toString()).toBe(HELLO_SHA256);
    expect(verifier.bytes).toBe(5);
    expect(verifier.finished).toBe(true);
  });

  it('digests an empty stream', async () => {
    const verifier = new DigestVerifier();
    await pipeline(Readable.from([]), verifier, sink());
    expect(verifier.digest().toString()).toBe(EMPTY_SHA256);
    expect(verifier.bytes).toBe(0);
  });

  it('refuses to report a digest before the end', () => {
    const verifier = new DigestVerifier();
    verifier.write(Buffer.from('abc'));
    expect(verifier.finished).toBe(false);
    expect(() => verifier.digest()).toThrow(/before the stream ended/);
    verifier.destroy();
  });

  it('streams many chunks (24 MiB) and matches a one-shot hash', async () => {
    const chunk = Buffer.alloc(64 * 1024);
    const count = 384;
    const reference = createHash('sha256');
    function* source() {
      for (let i = 0; i < count; i++) {
        chunk.fill(i % 251);
        reference.update(chunk);
        yield Buffer.from(chunk);
      }
    }
    const verifier = digestStream();
    const out = sink();
    await pipeline(Readable.from(source()), verifier, out);
    expect(out.received).toBe(count * chunk.length);
    expect(verifier.bytes).toBe(count * chunk.length);
    expect(verifier.digest().hex).toBe(reference.digest('hex'));
  });

  it('ends cleanly when the expected digest and size match', async () => {
    const verifier = digestStream({ expected: HELLO_SHA256, expectedSize: 5 });
    await pipeline(Readable.from([Buffer.from('hello')]), verifier, sink());
    expect(verifier.digest().toString()).toBe(HELLO_SHA256);
  });

  it('fails the pipeline with DIGEST_INVALID on a mismatch', async () => {
    const verifier = digestStream({ expected: Digest.parse(EMPTY_SHA256) });
    const out = sink();
    await expect(pipeline(Readable.from([Buffer.from('hello')]), verifier, out)).rejects.toMatchObject({
      code: OciErrorCode.DIGEST_INVALID,
      detail: { expected: EMPTY_SHA256, actual: HELLO_SHA256 },
    });
    expect(out.writableFinished).toBe(false);
  });

  it('fails with SIZE_INVALID as soon as more bytes than expected pass', async () => {
    const verifier = digestStream({ expectedSize: 3 });
    const out = sink();
    await expect(pipeline(Readable.from([Buffer.from('ab'), Buffer.from('cd'), Buffer.from('ef')]), verifier, out)).rejects.toMatchObject({
      code: OciErrorCode.SIZE_INVALID,
    });
    expect(out.received).toBe(2);
  });

  it('fails with SIZE_INVALID when fewer bytes than expected pass', async () => {
    const verifier = digestStream({ expected: HELLO_SHA256, expectedSize: 6 });
    await expect(pipeline(Readable.from([Buffer.from('hello')]), verifier, sink())).rejects.toMatchObject({
      code: OciErrorCode.SIZE_INVALID,
      detail: { expected: 6, received: 5 },
    });
  });

  it('cannot verify unsupported algorithms or nonsense options', () => {
    expectDigestInvalid(() => digestStream({ expected: `sha512:${SHA512_HEX}` }));
    expectDigestInvalid(() => digestStream({ expected: 'nope' }));
    expect(() => digestStream({ expectedSize: -1 })).toThrow(RangeError);
    expect(() => digestStream({ expectedSize: 1.5 })).toThrow(RangeError);
  });
});
