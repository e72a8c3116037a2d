import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CredentialEncryptionService, encryptionKeyId, parseEncryptionKey, UnknownEncryptionKeyError } from './credential-encryption.service.js';

async function service(dataDir: string, encryptionKey?: string, previous: string[] = []): Promise<CredentialEncryptionService> {
  const s = new CredentialEncryptionService(
    { encryptionKey, encryptionPreviousKeys: previous } as never,
    { dataDir } as never,
    { url: undefined } as never,
  );
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
    const a = s.encrypt('s3cret');
    const b = s.encrypt('s3cret');
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(a.keyId).toBe(encryptionKeyId(parseEncryptionKey('ab'.repeat(32))));
    expect(Buffer.from(a.ciphertext, 'base64').includes(Buffer.from('s3cret'))).toBe(false);
    expect(s.decrypt(a)).toBe('s3cret');
    const tampered = Buffer.from(a.ciphertext, 'base64');
    tampered[tampered.length - 1] ^= 1;
    expect(() => s.decrypt({ ...a, ciphertext: tampered.toString('base64') })).toThrow();
  });

  it('accepts base64 keys as well as hex', async () => {
    const key = Buffer.alloc(32, 7);
    const hex = await service(dir, key.toString('hex'));
    const b64 = await service(dir, key.toString('base64'));
    expect(b64.decrypt(hex.encrypt('x'))).toBe('x');
  });

  it('generates <dataDir>/keys/encryption.key (0600) once and reuses it', async () => {
    const first = await service(dir);
    const sealed = first.encrypt('pw');
    const file = join(dir, 'keys', 'encryption.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    const second = await service(dir);
    expect(second.currentKeyId).toBe(first.currentKeyId);
    expect(second.decrypt(sealed)).toBe('pw');
  });

  it('rotates: previous keys still decrypt, only the current key encrypts, unknown keys are named', async () => {
    const oldKey = '11'.repeat(32);
    const newKey = '22'.repeat(32);
    const sealedOld = (await service(dir, oldKey)).encrypt('old');
    const rotated = await service(dir, newKey, [oldKey]);
    expect(rotated.decrypt(sealedOld)).toBe('old');
    expect(rotated.isStale(sealedOld.keyId)).toBe(true);
    expect(rotated.encrypt('new').keyId).toBe(encryptionKeyId(parseEncryptionKey(newKey)));
    const forgetful = await service(dir, newKey);
    expect(() => forgetful.decrypt(sealedOld)).toThrow(UnknownEncryptionKeyError);
  });
});
