/**
 * Content digests (`sha256:<64 lowercase hex>`) and the stream that computes one as bytes flow by.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback, type TransformOptions } from 'node:stream';
import { OciError, OciErrorCode } from './oci-error.js';

/** Algorithms this registry can parse. Only sha256 can be verified and stored (see `isSupported`). */
export type DigestAlgorithm = 'sha256' | 'sha512';

/** Hex length of each algorithm's encoded part. */
const HEX_LENGTH: Readonly<Record<DigestAlgorithm, number>> = { sha256: 64, sha512: 128 };

const DIGEST_PATTERN = /^(sha256|sha512):([0-9a-f]+)$/;

/** The algorithm content is verified and stored with. */
export const SUPPORTED_DIGEST_ALGORITHM = 'sha256' satisfies DigestAlgorithm;

export class Digest {
  private constructor(
    readonly algorithm: DigestAlgorithm,
    /** The encoded part: lowercase hex. */
    readonly hex: string,
  ) {}

  /** Parse `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase only); anything else is DIGEST_INVALID. */
  static parse(value: string): Digest {
    const digest = Digest.tryParse(value);
    if (!digest) {
      throw new OciError(OciErrorCode.DIGEST_INVALID, 'invalid digest', { detail: { digest: String(value).slice(0, 200) } });
    }
    return digest;
  }

  /** Like `parse`, but undefined instead of an error. */
  static tryParse(value: string): Digest | undefined {
    if (typeof value !== 'string') return undefined;
    const match = DIGEST_PATTERN.exec(value);
    if (!match) return undefined;
    const algorithm = match[1] as DigestAlgorithm;
    return match[2].length === HEX_LENGTH[algorithm] ? new Digest(algorithm, match[2]) : undefined;
  }

  static isValid(value: string): boolean {
    return Digest.tryParse(value) !== undefined;
  }

  /** The digest of a finished node:crypto hash (consumes it: `hash.digest()` is called). */
  static fromHash(hash: Hash, algorithm: DigestAlgorithm = SUPPORTED_DIGEST_ALGORITHM): Digest {
    const hex = hash.digest('hex');
    if (hex.length !== HEX_LENGTH[algorithm]) throw new TypeError(`hash output does not match ${algorithm}`);
    return new Digest(algorithm, hex);
  }

  /** The sha256 digest of a small in-memory payload (manifests, configs); blobs go through `digestStream`. */
  static of(bytes: Uint8Array | string): Digest {
    return Digest.fromHash(createHash(SUPPORTED_DIGEST_ALGORITHM).update(bytes));
  }

  /** True when content with this digest can be verified and cached (sha256 only). */
  get isSupported(): boolean {
    return this.algorithm === SUPPORTED_DIGEST_ALGORITHM;
  }

  /** `sha256-<hex>`: usable as a BullMQ job id (no `:`) and as a file name. */
  jobKey(): string {
    return `${this.algorithm}-${this.hex}`;
  }

  equals(other: Digest | string | undefined | null): boolean {
    if (other === undefined || other === null) return false;
    return typeof other === 'string' ? other === this.toString() : other.algorithm === this.algorithm && other.hex === this.hex;
  }

  toString(): string {
    return `${this.algorithm}:${this.hex}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

export interface DigestVerifierOptions extends Pick<TransformOptions, 'highWaterMark'> {
  /** When set, the stream fails with DIGEST_INVALID at its end if the bytes hash differently. */
  expected?: Digest | string;
  /** When set, the stream fails with SIZE_INVALID as soon as more bytes pass, or at its end if fewer did. */
  expectedSize?: number;
}

/**
 * A pass-through Transform that hashes (sha256) every byte flowing through it, in constant memory.
 * After the stream ends, `digest()` and `bytes` describe what passed. With `expected`/`expectedSize`
 * it fails (emits an OciError) instead of ending cleanly, so a pipeline into a client or a temp file
 * aborts rather than delivering or committing wrong bytes.
 */
export class DigestVerifier extends Transform {
  private readonly hash = createHash(SUPPORTED_DIGEST_ALGORITHM);
  private readonly expected?: Digest;
  private readonly expectedSize?: number;
  private count = 0;
  private result?: Digest;

  constructor(options: DigestVerifierOptions = {}) {
    super({ highWaterMark: options.highWaterMark });
    if (options.expected !== undefined) {
      const expected = typeof options.expected === 'string' ? Digest.parse(options.expected) : options.expected;
      if (!expected.isSupported) {
        throw new OciError(OciErrorCode.DIGEST_INVALID, `unsupported digest algorithm ${expected.algorithm}`, {
          detail: { digest: expected.toString() },
        });
      }
      this.expected = expected;
    }
    if (options.expectedSize !== undefined) {
      if (!Number.isSafeInteger(options.expectedSize) || options.expectedSize < 0) {
        throw new RangeError(`expectedSize must be a non-negative integer, got ${options.expectedSize}`);
      }
      this.expectedSize = options.expectedSize;
    }
  }

  /** Bytes seen so far (final once the stream has ended). */
  get bytes(): number {
    return this.count;
  }

  /** True once the stream has ended and the digest is known. */
  get finished(): boolean {
    return this.result !== undefined;
  }

  /** The digest of all bytes that passed; only available after the stream has ended. */
  digest(): Digest {
    if (!this.result) throw new Error('DigestVerifier.digest() called before the stream ended');
    return this.result;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    if (this.expectedSize !== undefined && this.count > this.expectedSize) {
      callback(this.sizeError());
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.result = Digest.fromHash(this.hash);
    if (this.expectedSize !== undefined && this.count !== this.expectedSize) {
      callback(this.sizeError());
      return;
    }
    if (this.expected && !this.expected.equals(this.result)) {
      callback(
        new OciError(OciErrorCode.DIGEST_INVALID, 'content does not match its digest', {
          detail: { expected: this.expected.toString(), actual: this.result.toString() },
        }),
      );
      return;
    }
    callback();
  }

  private sizeError(): OciError {
    return new OciError(OciErrorCode.SIZE_INVALID, `content length does not match the expected ${this.expectedSize} bytes`, {
      detail: { expected: this.expectedSize, received: this.count },
    });
  }
}

/** A new DigestVerifier: `pipeline(source, digestStream({ expected }), destination)`. */
export function digestStream(options: DigestVerifierOptions = {}): DigestVerifier {
  return new DigestVerifier(options);
}
