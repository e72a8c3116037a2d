import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sealedBeforeRowBinding } from '../../test/support/legacy-credentials.js';
import {
  CredentialEncryptionService,
  encryptionKeyId,
  parseEncryptionKey,
  UnknownEncryptionKeyError,
  UnreadableCredentialsError,
} from './credential-encryption.service.js';

async function service(dataDir: string, encryptionKey?: string, previous: string[] = []): Promise<CredentialEncryptionService> {
  const s = new CredentialEncryptionService({ encryptionKey, encryptionPreviousKeys: previous } as never, { dataDir } as never, { url: undefined } as never);
  await s.onModuleInit();
  return s;
}

describe('CredentialEncryptionService', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cvr-keys-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('seals with AES-256-GCM: fresh IV each time, authenticated, opened with the same key', async () => {
    const s = await service(dir, 'ab'.repeat(32));
    const a = s.encrypt('s3cret', 1);
    const b = s.encrypt('s3cret', 1);
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(a.keyId).toBe(encryptionKeyId(parseEncryptionKey('ab'.repeat(32))));
    expect(Buffer.from(a.ciphertext.slice('v2.'.length), 'base64').includes(Buffer.from('s3cret'))).toBe(false);
    expect(s.decrypt(a, 1)).toBe('s3cret');
    const tampered = Buffer.from(a.ciphertext.slice('v2.'.length), 'base64');
    tampered[tampered.length - 1] ^= 1;
    expect(() => s.decrypt({ ...a, ciphertext: `v2.${tampered.toString('base64')}` }, 1)).toThrow(UnreadableCredentialsError);
  });

  it('accepts base64 keys as well as hex', async () => {
    const key = Buffer.alloc(32, 7);
    const hex = await service(dir, key.toString('hex'));
    const b64 = await service(dir, key.toString('base64'));
    expect(b64.decrypt(hex.encrypt('x', 1), 1)).toBe('x');
  });

  it('generates <dataDir>/keys/encryption.key (0600) once and reuses it', async () => {
    const first = await service(dir);
    const sealed = first.encrypt('pw', 1);
    const file = join(dir, 'keys', 'encryption.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    const second = await service(dir);
    expect(second.currentKeyId).toBe(first.currentKeyId);
    expect(second.decrypt(sealed, 1)).toBe('pw');
  });

  it('rotates: previous keys still decrypt, only the current key encrypts, unknown keys are named', async () => {
    const oldKey = '11'.repeat(32);
    const newKey = '22'.repeat(32);
    const sealedOld = (await service(dir, oldKey)).encrypt('old', 1);
    const rotated = await service(dir, newKey, [oldKey]);
    expect(rotated.decrypt(sealedOld, 1)).toBe('old');
    expect(rotated.needsResealing(sealedOld)).toBe(true);
    expect(rotated.encrypt('new', 1).keyId).toBe(encryptionKeyId(parseEncryptionKey(newKey)));
    const forgetful = await service(dir, newKey);
    expect(() => forgetful.decrypt(sealedOld, 1)).toThrow(UnknownEncryptionKeyError);
  });

  it('binds a ciphertext to its upstream row: copied to another row it does not open', async () => {
    const s = await service(dir, 'ab'.repeat(32));
    const sealedForA = s.encrypt('password-of-a', 41);
    expect(sealedForA.ciphertext.startsWith('v2.')).toBe(true);
    expect(s.decrypt(sealedForA, 41)).toBe('password-of-a');
    expect(() => s.decrypt(sealedForA, 42)).toThrow(UnreadableCredentialsError);
    expect(() => s.decrypt(sealedForA, 42)).toThrow('the stored credentials of upstream 42 cannot be decrypted');
    expect(() => s.decrypt({ ...sealedForA, ciphertext: 'v2.AAAA' }, 41)).toThrow(UnreadableCredentialsError);
    expect(s.needsResealing(sealedForA)).toBe(false);
  });

  it('still opens rows sealed before the binding, for any row, and marks them for re-sealing', async () => {
    const key = 'cd'.repeat(32);
    const s = await service(dir, key);
    const legacy = sealedBeforeRowBinding(key, 'old-format');
    expect(s.decrypt(legacy, 7)).toBe('old-format');
    expect(s.needsResealing(legacy)).toBe(true);
    const resealed = s.encrypt(s.decrypt(legacy, 7), 7);
    expect(s.decrypt(resealed, 7)).toBe('old-format');
    expect(() => s.decrypt(resealed, 8)).toThrow(UnreadableCredentialsError);
  });
});
