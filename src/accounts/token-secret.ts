import { createHash, randomBytes } from 'node:crypto';

/** Secrets are recognisable in leaks (secret scanners can match the prefix) and carry 256 random bits. */
export const PERSONAL_ACCESS_TOKEN_PREFIX = 'cvrpat-';
export const DEPLOY_TOKEN_PREFIX = 'cvrdt-';

const SECRET_BYTES = 32;

/** A new secret: the prefix and 32 random bytes in base64url (43 characters). */
export function generateTokenSecret(prefix: string): string {
  return `${prefix}${randomBytes(SECRET_BYTES).toString('base64url')}`;
}

/**
 * What is stored instead of the secret: its SHA-256, hex. The secrets are random and long, so a plain
 * hash (no salt, no slow KDF) is enough and keeps a lookup to one unique-index probe.
 */
export function tokenDigest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}
