import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { type AppConfig, appConfig, type DatabaseConfig, databaseConfig, type SecurityConfig, securityConfig } from '../config/config.js';

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Ciphertexts sealed for one upstream row start with this; base64 never contains a `.`. */
const BOUND_PREFIX = 'v2.';
/** Associated data of the first format (no prefix): bound to the purpose only, not to a row. */
const LEGACY_ASSOCIATED_DATA = Buffer.from('cvr:upstream-credentials:v1');

/**
 * Binds a ciphertext to its purpose and to its upstream row: a sealed password copied to another
 * upstream's row (or replayed as anything else) does not open.
 */
function associatedData(upstreamId: number): Buffer {
  return Buffer.from(`cvr:upstream-credentials:v2:${upstreamId}`);
}

export interface SealedSecret {
  /** `v2.` + base64(iv | tag | ciphertext), sealed for one upstream id; legacy rows lack the prefix. */
  ciphertext: string;
  /** Which key sealed it (a fingerprint of the key, never the key). */
  keyId: string;
}

export class UnknownEncryptionKeyError extends Error {
  constructor(readonly keyId: string) {
    super(
      `credentials were sealed with encryption key ${keyId}, which is not configured ` +
        '(set ENCRYPTION_KEY, or list the old key in ENCRYPTION_PREVIOUS_KEYS)',
    );
    this.name = 'UnknownEncryptionKeyError';
  }
}

/** The ciphertext does not open for this upstream: sealed for another row, altered, or truncated. */
export class UnreadableCredentialsError extends Error {
  constructor(readonly upstreamId: number) {
    super(`the stored credentials of upstream ${upstreamId} cannot be decrypted (sealed for another upstream, or altered): set them again`);
    this.name = 'UnreadableCredentialsError';
  }
}

/** 64 hex characters, or base64 of 32 bytes (validated at boot by parseEnvironment). */
export function parseEncryptionKey(value: string): Buffer {
  const key = /^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  if (key.length !== 32) throw new Error('an encryption key must be 32 bytes');
  return key;
}

/** A stable, non-secret identifier of a key, stored beside each ciphertext so keys can rotate. */
export function encryptionKeyId(key: Buffer): string {
  return createHash('sha256').update('cvr-key-id:').update(key).digest('hex').slice(0, 16);
}

/**
 * Seals upstream credentials at rest with AES-256-GCM.
 *
 * The key is ENCRYPTION_KEY; without it, a key generated once into `<DATA_DIR>/keys/encryption.key`
 * (mode 0600) is used, which suits the embedded single-process default. Several replicas sharing an
 * external database must share ENCRYPTION_KEY. ENCRYPTION_PREVIOUS_KEYS keeps old keys readable during a
 * rotation (UpstreamsService re-seals rows at boot). Each ciphertext is sealed for one upstream id
 * (AES-GCM associated data), so it only opens in its own row; rows sealed before that binding (no `v2.`
 * prefix) still open and are re-sealed at boot. Plaintexts are never logged.
 */
@Injectable()
export class CredentialEncryptionService implements OnModuleInit {
  private readonly logger = new Logger(CredentialEncryptionService.name);
  private current?: { id: string; key: Buffer };
  private readonly keys = new Map<string, Buffer>();

  constructor(
    @Inject(securityConfig.KEY) private readonly security: SecurityConfig,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
    @Inject(databaseConfig.KEY) private readonly database: DatabaseConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    await this.loadKeys();
  }

  get currentKeyId(): string {
    return this.currentKey().id;
  }

  /** Seals `plaintext` with the current key for the upstream row `upstreamId` only. */
  encrypt(plaintext: string, upstreamId: number): SealedSecret {
    const { id, key } = this.currentKey();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(upstreamId));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { ciphertext: BOUND_PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'), keyId: id };
  }

  /**
   * Opens what was sealed for `upstreamId` (or, in the legacy format, for any upstream). Throws
   * UnknownEncryptionKeyError for a key that is not configured, UnreadableCredentialsError otherwise.
   */
  decrypt(sealed: SealedSecret, upstreamId: number): string {
    this.currentKey();
    const key = this.keys.get(sealed.keyId);
    if (!key) throw new UnknownEncryptionKeyError(sealed.keyId);
    const bound = sealed.ciphertext.startsWith(BOUND_PREFIX);
    const raw = Buffer.from(bound ? sealed.ciphertext.slice(BOUND_PREFIX.length) : sealed.ciphertext, 'base64');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new UnreadableCredentialsError(upstreamId);
    try {
      const decipher = createDecipheriv(ALGORITHM, key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(bound ? associatedData(upstreamId) : LEGACY_ASSOCIATED_DATA);
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new UnreadableCredentialsError(upstreamId);
    }
  }

  /** True when a row should be re-sealed: another key sealed it, or it is not bound to its row yet. */
  needsResealing(sealed: SealedSecret): boolean {
    return sealed.keyId !== this.currentKeyId || !sealed.ciphertext.startsWith(BOUND_PREFIX);
  }

  private currentKey(): { id: string; key: Buffer } {
    if (!this.current) throw new Error('CredentialEncryptionService used before its keys were loaded');
    return this.current;
  }

  private async loadKeys(): Promise<void> {
    const key = this.security.encryptionKey ? parseEncryptionKey(this.security.encryptionKey) : await this.generatedKey();
    this.current = { id: encryptionKeyId(key), key };
    this.keys.set(this.current.id, key);
    for (const previous of this.security.encryptionPreviousKeys ?? []) {
      const old = parseEncryptionKey(previous);
      this.keys.set(encryptionKeyId(old), old);
    }
  }

  /** `<DATA_DIR>/keys/encryption.key`: created once (exclusively, so racing processes agree), mode 0600. */
  private async generatedKey(): Promise<Buffer> {
    const dir = join(this.app.dataDir, 'keys');
    const file = join(dir, 'encryption.key');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      await writeFile(file, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
      this.logger.log(`generated a credentials encryption key in ${file} (set ENCRYPTION_KEY to manage it yourself)`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    await chmod(file, 0o600);
    if (this.database.url) {
      this.logger.warn(`ENCRYPTION_KEY is not set: using ${file}. Every replica sharing this database must use the same key; set ENCRYPTION_KEY.`);
    }
    return parseEncryptionKey((await readFile(file, 'utf8')).trim());
  }
}
