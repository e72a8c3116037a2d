import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../accounts/actor.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { InvalidatedLru } from '../invalidation/invalidated-lru.js';
import { MetricsService } from '../observability/metrics.service.js';

/** Credentials remembered per replica: one per secret or token id used within MEMORY_CACHE_TTL_MS. */
const REMEMBERED_CREDENTIALS = 10_000;

/** How a credential was presented: its secret (by the secret's digest), or its id in a registry JWT. */
export type CredentialKey =
  { by: 'secret'; kind: 'personal_access_token' | 'deploy_token'; digest: string } | { by: 'id'; kind: 'personal_access_token' | 'deploy_token'; id: number };

/**
 * The actors of the credentials one replica checked lately: a client that logs in at the token endpoint
 * and then pulls with the registry JWT it got costs the database the credential's read once per
 * MEMORY_CACHE_TTL_MS, not on every token request and every new JWT. The rules of the other memory
 * caches: every committed change to tokens, users, memberships or groups forgets everything
 * (InvalidationBus: a revoked token, a blocked or deleted user counts from the next request of this
 * replica on, and on the others once Redis delivers the change), an actor read before such a change is
 * not kept, refusals are never kept, and nothing is kept past the credential's own expiry.
 */
@Injectable()
export class RecentCredentials {
  private readonly items?: InvalidatedLru<Actor>;

  constructor(@Inject(limitsConfig.KEY) limits: LimitsConfig, @Inject(INVALIDATION_BUS) bus: InvalidationBus, metrics: MetricsService) {
    if (limits.memoryCacheTtlMs > 0) {
      this.items = new InvalidatedLru<Actor>(bus, {
        ttlMs: limits.memoryCacheTtlMs,
        max: REMEMBERED_CREDENTIALS,
        counts: metrics.memoryCacheCounts('credential'),
      });
    }
  }

  /** Counts changes; take it before the database read whose actor remember() will keep. */
  get generation(): number {
    return this.items?.generation ?? 0;
  }

  get(credential: CredentialKey): Actor | undefined {
    return this.items?.get(keyOf(credential));
  }

  /** Keeps a working credential's actor (frozen: callers share it) until `expiresAt` at the latest. */
  remember(credential: CredentialKey, actor: Actor, generation: number, expiresAt: Date | null): void {
    if (!this.items) return;
    Object.freeze(actor.scopes);
    this.items.set(keyOf(credential), Object.freeze(actor), generation, expiresAt ? expiresAt.getTime() - Date.now() : Infinity);
  }
}

function keyOf(credential: CredentialKey): string {
  return credential.by === 'secret' ? `${credential.kind} secret ${credential.digest}` : `${credential.kind} id ${credential.id}`;
}
