import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import type { AppConfig, DatabaseConfig, SecurityConfig } from '../config/config.js';
import { generatedKeyPath, InvalidTokenError, SigningKeyService } from './signing-key.service.js';

const pem = (type: 'ec' | 'rsa') =>
  (type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 })).privateKey
    .export({ type: 'pkcs8', format: 'pem' })
    .toString();
const publicPem = (privatePem: string) => createPublicKey(privatePem).export({ type: 'spki', format: 'pem' }).toString();

describe('SigningKeyService', () => {
  let dataDir: string;
  beforeAll(() => Logger.overrideLogger(false));
  afterAll(() => Logger.overrideLogger(['log', 'error', 'warn']));
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'cvr-keys-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  async function service(security: Partial<SecurityConfig> = {}): Promise<SigningKeyService> {
    const s = new SigningKeyService({ jwtTtlSeconds: 900, ...security } as SecurityConfig, { dataDir } as AppConfig, { url: undefined } as DatabaseConfig);
    await s.onModuleInit();
    return s;
  }

  const sign = (s: SigningKeyService, seconds = 60) =>
    s.sign({ hello: 'world' }, { audience: 'virtual_registry', subject: 'alice', expiresAt: new Date(Date.now() + seconds * 1000) });

  it('generates a P-256 key once under DATA_DIR/keys (mode 0600) and reuses it after a restart', async () => {
    const first = await service();
    const path = generatedKeyPath(dataDir);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toContain('BEGIN PRIVATE KEY');
    expect(first.currentKey.alg).toBe('ES256');
    const token = await sign(first);
    const second = await service();
    expect(second.currentKey.kid).toBe(first.currentKey.kid);
    await expect(second.verify(token, 'virtual_registry')).resolves.toMatchObject({ hello: 'world', sub: 'alice', aud: 'virtual_registry' });
  });

  it('replicas starting together on one DATA_DIR end up with the same key', async () => {
    const [a, b, c] = await Promise.all([service(), service(), service()]);
    expect(new Set([a.currentKey.kid, b.currentKey.kid, c.currentKey.kid]).size).toBe(1);
  });

  it('uses JWT_PRIVATE_KEY (RSA -> RS256) and writes nothing', async () => {
    const s = await service({ jwtPrivateKey: pem('rsa') });
    expect(s.currentKey.alg).toBe('RS256');
    const token = await sign(s);
    expect(JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString())).toEqual({ alg: 'RS256', kid: s.currentKey.kid, typ: 'JWT' });
    await expect(s.verify(token, 'virtual_registry')).resolves.toMatchObject({ hello: 'world' });
    expect(() => statSync(generatedKeyPath(dataDir))).toThrow();
  });

  it('keeps verifying the previous key after a rotation, and only with JWT_PREVIOUS_PUBLIC_KEY', async () => {
    const oldKey = pem('ec');
    const newKey = pem('ec');
    const before = await service({ jwtPrivateKey: oldKey });
    const oldToken = await sign(before);
    const rotated = await service({ jwtPrivateKey: newKey, jwtPreviousPublicKey: publicPem(oldKey) });
    expect(rotated.currentKey.kid).not.toBe(before.currentKey.kid);
    await expect(rotated.verify(oldToken, 'virtual_registry')).resolves.toMatchObject({ hello: 'world' });
    await expect(rotated.verify(await sign(rotated), 'virtual_registry')).resolves.toMatchObject({ hello: 'world' });
    const forgotten = await service({ jwtPrivateKey: newKey });
    await expect(forgotten.verify(oldToken, 'virtual_registry')).rejects.toBeInstanceOf(InvalidTokenError);
  });

  it('refuses expired tokens, other audiences and garbage', async () => {
    const s = await service();
    const expired = await s.sign(
      {},
      { audience: 'virtual_registry', subject: 'a', issuedAt: new Date(Date.now() - 120_000), expiresAt: new Date(Date.now() - 60_000) },
    );
    await expect(s.verify(expired, 'virtual_registry')).rejects.toThrow(/invalid token/);
    await expect(s.verify(await sign(s), 'virtual_registry/refresh')).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(s.verify('a.b.c', 'virtual_registry')).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(s.verify('', 'virtual_registry')).rejects.toBeInstanceOf(InvalidTokenError);
  });
});
