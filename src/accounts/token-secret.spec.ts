import { createHash } from 'node:crypto';
import { DEPLOY_TOKEN_PREFIX, generateTokenSecret, PERSONAL_ACCESS_TOKEN_PREFIX, tokenDigest } from './token-secret.js';

describe('token secrets', () => {
  it('are prefixed, url-safe and carry 32 random bytes', () => {
    const secret = generateTokenSecret(PERSONAL_ACCESS_TOKEN_PREFIX);
    expect(secret).toMatch(/^cvrpat-[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(secret.slice(PERSONAL_ACCESS_TOKEN_PREFIX.length), 'base64url')).toHaveLength(32);
    expect(generateTokenSecret(DEPLOY_TOKEN_PREFIX)).toMatch(/^cvrdt-[A-Za-z0-9_-]{43}$/);
  });

  it('never repeat', () => {
    const secrets = new Set(Array.from({ length: 1000 }, () => generateTokenSecret(PERSONAL_ACCESS_TOKEN_PREFIX)));
    expect(secrets.size).toBe(1000);
  });

  it('are stored as their hex SHA-256 only', () => {
    const secret = generateTokenSecret(PERSONAL_ACCESS_TOKEN_PREFIX);
    const digest = tokenDigest(secret);
    expect(digest).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    expect(digest).not.toContain(secret.slice(PERSONAL_ACCESS_TOKEN_PREFIX.length, 20));
  });
});
