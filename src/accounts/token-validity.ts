import type { DeployToken } from './deploy-token.entity.js';
import type { PersonalAccessToken } from './personal-access-token.entity.js';

/** The UTC date `YYYY-MM-DD`; a personal access token expiring on that date no longer works (GitLab's rule). */
export function utcToday(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}

export function personalAccessTokenUsable(token: Pick<PersonalAccessToken, 'revoked' | 'expiresAt'>, now = new Date()): boolean {
  return !token.revoked && (token.expiresAt === null || token.expiresAt > utcToday(now));
}

export function deployTokenExpired(token: Pick<DeployToken, 'expiresAt'>, now = new Date()): boolean {
  return token.expiresAt !== null && token.expiresAt.getTime() <= now.getTime();
}

export function deployTokenUsable(token: Pick<DeployToken, 'revoked' | 'expiresAt'>, now = new Date()): boolean {
  return !token.revoked && !deployTokenExpired(token, now);
}
