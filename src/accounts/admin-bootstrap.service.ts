import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { TokenScope } from './actor.js';
import { securityConfig } from '../config/config.js';
import type { SecurityConfig } from '../config/config.js';
import { PersonalAccessTokensService } from './personal-access-tokens.service.js';
import { generateTokenSecret, PERSONAL_ACCESS_TOKEN_PREFIX } from './token-secret.js';
import { User } from './user.entity.js';

export const BOOTSTRAP_USERNAME = 'root';
export const BOOTSTRAP_TOKEN_NAME = 'initial admin token';
/** The instance_settings key recording that the bootstrap ran (so it never runs twice). */
export const BOOTSTRAP_SETTING = 'accounts.bootstrap';
/** Any constant: replicas booting together serialise the bootstrap on it. */
const BOOTSTRAP_LOCK_KEY = 7_274_182_932;

/**
 * The first start on an empty database creates the instance administrator `root` and a personal access
 * token with the `api` and `read_virtual_registry` scopes. Its secret is INITIAL_ADMIN_TOKEN when set;
 * otherwise one is generated and logged once (warn), never again. Runs under a transaction-scoped advisory
 * lock and records itself in instance_settings, so restarts and replicas booting together do it once.
 */
@Injectable()
export class AdminBootstrapService implements OnApplicationBootstrap {
  private readonly logger = new Logger(AdminBootstrapService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly personalAccessTokens: PersonalAccessTokensService,
    @Inject(securityConfig.KEY) private readonly security: SecurityConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.bootstrap();
  }

  /** Returns what it created, or null when the instance was already bootstrapped. */
  async bootstrap(): Promise<{ user: User; generatedSecret?: string } | null> {
    const given = this.security.initialAdminToken;
    const secret = given ?? generateTokenSecret(PERSONAL_ACCESS_TOKEN_PREFIX);
    const created = await this.dataSource.transaction(async (manager) => {
      await manager.query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK_KEY]);
      const done: unknown[] = await manager.query('SELECT 1 FROM instance_settings WHERE key = $1', [BOOTSTRAP_SETTING]);
      if (done.length) return null;
      let user: User | null = null;
      // A database that already has users (restored, or migrated from elsewhere) is left as it is.
      if (!(await manager.exists(User))) {
        user = await manager.save(manager.create(User, { username: BOOTSTRAP_USERNAME, email: null, admin: true }));
        await this.personalAccessTokens.insertWithSecret(
          manager,
          user.id,
          { name: BOOTSTRAP_TOKEN_NAME, scopes: [TokenScope.API, TokenScope.READ_VIRTUAL_REGISTRY], expiresAt: null },
          secret,
        );
      }
      await manager.query(`INSERT INTO instance_settings (key, value) VALUES ($1, $2::jsonb)`, [
        BOOTSTRAP_SETTING,
        JSON.stringify({ at: new Date().toISOString(), user_id: user?.id ?? null }),
      ]);
      return user;
    });
    if (!created) return null;
    if (given) {
      this.logger.log(`created the administrator "${BOOTSTRAP_USERNAME}" with the api token from INITIAL_ADMIN_TOKEN`);
      return { user: created };
    }
    this.logger.warn(`created the administrator "${BOOTSTRAP_USERNAME}"; its api token is shown this once, store it now: ${secret}`);
    return { user: created, generatedSecret: secret };
  }
}
