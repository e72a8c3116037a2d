import { describe, expect, it } from '@jest/globals';
import { TokenScope, type UserActor } from '../accounts/actor.js';
import type { LimitsConfig } from '../config/config.js';
import { LocalInvalidationBus } from '../invalidation/invalidation-bus.js';
import { MetricsService } from '../observability/metrics.service.js';
import { RecentCredentials, type CredentialKey } from './recent-credentials.js';

const BY_SECRET: CredentialKey = { by: 'secret', kind: 'personal_access_token', digest: 'ab'.repeat(32) };
const BY_ID: CredentialKey = { by: 'id', kind: 'personal_access_token', id: 7 };

function actor(tokenId = 7): UserActor {
  return { kind: 'user', userId: 1, username: 'root', admin: true, scopes: [TokenScope.READ_VIRTUAL_REGISTRY], tokenId };
}

function setup(limits: Partial<LimitsConfig> = {}) {
  const bus = new LocalInvalidationBus();
  const recent = new RecentCredentials({ memoryCacheTtlMs: 5000, memoryCacheSize: 1024, ...limits } as LimitsConfig, bus, new MetricsService());
  return { bus, recent };
}

describe('RecentCredentials', () => {
  it('answers a remembered actor by the way its credential was presented, and nothing for another credential', () => {
    const { recent } = setup();
    recent.remember(BY_SECRET, actor(), recent.generation, null);
    expect(recent.get(BY_SECRET)?.tokenId).toBe(7);
    expect(recent.get(BY_ID)).toBeUndefined(); // the same token by id is a key of its own
    expect(recent.get({ ...BY_SECRET, digest: 'cd'.repeat(32) })).toBeUndefined();
    expect(recent.get({ ...BY_SECRET, kind: 'deploy_token' })).toBeUndefined();
    expect(recent.get({ by: 'id', kind: 'deploy_token', id: 7 })).toBeUndefined();
  });

  it('forgets everything on a change (a revoked token, a blocked user), and does not keep what was read before it', () => {
    const { bus, recent } = setup();
    recent.remember(BY_ID, actor(), recent.generation, null);
    const readBefore = recent.generation;
    bus.changed('personal access token 7 revoked');
    expect(recent.get(BY_ID)).toBeUndefined();
    recent.remember(BY_ID, actor(), readBefore, null);
    expect(recent.get(BY_ID)).toBeUndefined();
    recent.remember(BY_ID, actor(), recent.generation, null);
    expect(recent.get(BY_ID)?.tokenId).toBe(7);
  });

  it('keeps nothing past the credential’s own expiry', () => {
    const { recent } = setup();
    recent.remember(BY_ID, actor(), recent.generation, new Date(Date.now() - 1));
    expect(recent.get(BY_ID)).toBeUndefined();
    recent.remember(BY_SECRET, actor(), recent.generation, new Date(Date.now() + 60_000));
    expect(recent.get(BY_SECRET)?.tokenId).toBe(7);
  });

  it('hands out a frozen actor, so no caller can change what the next one gets', () => {
    const { recent } = setup();
    recent.remember(BY_ID, actor(), recent.generation, null);
    const remembered = recent.get(BY_ID)!;
    expect(Object.isFrozen(remembered)).toBe(true);
    expect(Object.isFrozen(remembered.scopes)).toBe(true);
  });

  it('remembers nothing with MEMORY_CACHE_TTL_MS=0', () => {
    const { recent } = setup({ memoryCacheTtlMs: 0 });
    recent.remember(BY_ID, actor(), recent.generation, null);
    expect(recent.get(BY_ID)).toBeUndefined();
  });
});
