import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { FastifyRequest } from 'fastify';
import { In, Repository } from 'typeorm';
import { securityConfig } from '../config/config.js';
import type { SecurityConfig } from '../config/config.js';
import { Registry } from '../registries/registry.entity.js';
import { Actor, GroupPermission } from '../accounts/actor.js';
import { CredentialReference, CredentialService } from './credential.service.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { AccessEntry, accessCovers, PULL_ACTION, REGISTRY_SERVICE, resolveRequestedScope, type RepositoryScope } from './registry-scope.js';
import { InvalidTokenError, SigningKeyService } from './signing-key.service.js';

/** Refresh tokens (`offline_token=true`, the OAuth2 form's `access_type=offline`) live this long. */
export const REFRESH_TOKEN_TTL_SECONDS = 30 * 24 * 3600;

/** Refresh tokens have their own audience, so one can never be used as a registry token (and vice versa). */
const REFRESH_AUDIENCE = `${REGISTRY_SERVICE}/refresh`;

/**
 * Why a registry request is refused:
 * - `unauthorized`: no token, or one that is malformed, tampered with, expired, signed by an unknown key,
 *   or whose credential was revoked, expired or blocked since: 401 with a fresh challenge;
 * - `denied`: a valid token whose scope does not cover this registry and repository: 403 DENIED.
 */
export class RegistryAuthError extends Error {
  constructor(
    readonly kind: 'unauthorized' | 'denied',
    message: string,
  ) {
    super(message);
    this.name = 'RegistryAuthError';
  }
}

/** A quoted-string parameter value (RFC 9110): backslash-escape `"` and `\`. */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * The `WWW-Authenticate` challenge of the registry routes:
 * `Bearer realm="<base>/jwt/auth",service="virtual_registry"[,scope="..."][,error="..."]`.
 * `base` is PUBLIC_URL or the request's own base (see requestBaseUrl). On the mirror routes the realm
 * names their registry (`/jwt/auth?registry=<id>`): mirror clients ask for the image's own name
 * (`repository:library/alpine:pull`), which the token endpoint reads as that registry's.
 */
export function challengeHeader(base: string, scope?: string, error?: 'invalid_token' | 'insufficient_scope', mirrorRegistryId?: number): string {
  const realm = `${base}/jwt/auth${mirrorRegistryId === undefined ? '' : `?registry=${mirrorRegistryId}`}`;
  let header = `Bearer realm=${quoted(realm)},service=${quoted(REGISTRY_SERVICE)}`;
  if (scope) header += `,scope=${quoted(scope)}`;
  if (error) header += `,error=${quoted(error)}`;
  return header;
}

/** A Host header we are willing to echo into a realm: a name or address with an optional port. */
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The base URL clients reach us at: PUBLIC_URL when configured, else the request's protocol and Host. */
export function requestBaseUrl(publicUrl: string | undefined, request: Pick<FastifyRequest, 'protocol' | 'host'>): string {
  if (publicUrl) return publicUrl;
  const host = HOST.test(request.host ?? '') ? request.host : 'localhost';
  return `${request.protocol}://${host}`;
}

/** The body of a successful token request (Docker token spec and the OAuth2 form). */
export interface RegistryTokenResponse {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
  refresh_token?: string;
  /** The granted scopes, space-separated (OAuth2 form only). */
  scope?: string;
}

interface TokenClaims {
  credential?: { type?: unknown; id?: unknown };
  /** A token for an anonymous caller: it only ever grants pulls from registries allowing anonymous pulls. */
  anonymous?: unknown;
  access?: unknown;
  exp?: number;
}

/** A verified pull token: who pulls (null: an anonymous caller), and until when the token says so. */
export interface PullGrant {
  actor: Actor | null;
  /** Epoch milliseconds. */
  expiresAt: number;
}

function credentialOf(actor: Actor): CredentialReference {
  return actor.kind === 'user' ? { type: 'personal_access_token', id: actor.tokenId } : { type: 'deploy_token', id: actor.deployTokenId };
}

/**
 * The Docker token service: mints registry JWTs granting exactly the requested pull scopes the actor
 * may have (others are silently dropped), and verifies them on every pull, together with the credential
 * they were minted from (a revoked token stops working at once, not when its JWTs expire).
 */
@Injectable()
export class RegistryTokenService {
  constructor(
    private readonly keys: SigningKeyService,
    private readonly credentials: CredentialService,
    private readonly policy: GroupAccessPolicy,
    @InjectRepository(Registry) private readonly registries: Repository<Registry>,
    @Inject(securityConfig.KEY) private readonly security: SecurityConfig,
  ) {}

  /**
   * The access entries of `requested` that `actor` may pull (unknown registries look like forbidden ones);
   * for an anonymous caller (`actor` null), those of registries allowing anonymous pulls. A mirror
   * client's bare scope counts as `mirrorRegistryId`'s (see resolveRequestedScope). One query reads the
   * registries named, then one permission check per distinct group, however many repositories of those
   * registries are requested.
   */
  async grant(actor: Actor | null, requested: string[], mirrorRegistryId?: number): Promise<AccessEntry[]> {
    const scopes = new Map<string, RepositoryScope>();
    for (const raw of requested) {
      const scope = resolveRequestedScope(raw, mirrorRegistryId);
      if (scope && scope.actions.includes(PULL_ACTION) && !scopes.has(scope.resourceName)) scopes.set(scope.resourceName, scope);
    }
    if (scopes.size === 0) return [];
    const registryIds = [...new Set([...scopes.values()].map((s) => s.registryId))];
    const registries = await this.registries.find({ select: { id: true, groupId: true, anonymousPull: true }, where: { id: In(registryIds) } });
    const pullableGroups = new Set<number>();
    if (actor) {
      for (const groupId of new Set(registries.map((r) => r.groupId))) {
        if (await this.policy.can(actor, groupId, GroupPermission.PULL)) pullableGroups.add(groupId);
      }
    }
    const pullable = new Set(registries.filter((r) => (actor ? pullableGroups.has(r.groupId) : r.anonymousPull)).map((r) => r.id));
    return [...scopes.values()]
      .filter((scope) => pullable.has(scope.registryId))
      .map((scope) => ({ type: 'repository', name: scope.resourceName, actions: [PULL_ACTION] }));
  }

  /**
   * Mints a token for `actor` with what it may have of `requested`; with `offline`, a refresh token too.
   * `scope` (the granted scopes, space-separated) is for the OAuth2 form's answer.
   */
  async issue(
    actor: Actor,
    requested: string[],
    options: { offline?: boolean; mirrorRegistryId?: number } = {},
  ): Promise<{ body: RegistryTokenResponse; scope: string }> {
    const access = await this.grant(actor, requested, options.mirrorRegistryId);
    const issuedAt = new Date();
    const token = await this.keys.sign(
      { credential: credentialOf(actor), access },
      {
        audience: REGISTRY_SERVICE,
        subject: actor.username,
        issuedAt,
        expiresAt: new Date(issuedAt.getTime() + this.security.jwtTtlSeconds * 1000),
      },
    );
    const response: RegistryTokenResponse = {
      token,
      access_token: token,
      expires_in: this.security.jwtTtlSeconds,
      issued_at: issuedAt.toISOString(),
    };
    if (options.offline) {
      response.refresh_token = await this.keys.sign(
        { credential: credentialOf(actor) },
        {
          audience: REFRESH_AUDIENCE,
          subject: actor.username,
          issuedAt,
          expiresAt: new Date(issuedAt.getTime() + REFRESH_TOKEN_TTL_SECONDS * 1000),
        },
      );
    }
    return { body: response, scope: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ') };
  }

  /**
   * A pull-only token for an anonymous caller, granting what it asked for of registries that allow
   * anonymous pulls; null when that is nothing (the caller is then asked for credentials, as before).
   */
  async issueAnonymous(requested: string[], mirrorRegistryId?: number): Promise<{ body: RegistryTokenResponse; scope: string } | null> {
    const access = await this.grant(null, requested, mirrorRegistryId);
    if (access.length === 0) return null;
    const issuedAt = new Date();
    const token = await this.keys.sign(
      { anonymous: true, access },
      {
        audience: REGISTRY_SERVICE,
        subject: ANONYMOUS_SUBJECT,
        issuedAt,
        expiresAt: new Date(issuedAt.getTime() + this.security.jwtTtlSeconds * 1000),
      },
    );
    return {
      body: { token, access_token: token, expires_in: this.security.jwtTtlSeconds, issued_at: issuedAt.toISOString() },
      scope: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' '),
    };
  }

  /** Whether a registry lets anyone pull without credentials (false for one that does not exist). */
  async allowsAnonymousPull(registryId: number): Promise<boolean> {
    const registry = await this.registries.findOne({ select: { id: true, anonymousPull: true }, where: { id: registryId } });
    return registry?.anonymousPull === true;
  }

  /** The actor a refresh token was issued to, if its credential still works. */
  async actorFromRefreshToken(refreshToken: string): Promise<Actor> {
    return this.actorOf(await this.claims(refreshToken, REFRESH_AUDIENCE));
  }

  /**
   * For the pull routes: the token in `Authorization: Bearer` must be valid and unexpired, grant pull on
   * exactly `repository:virtual_registries/containers/<registryId>/<repositoryName>:pull`, and its
   * credential must still work. Returns the actor; the caller then checks GroupAccessPolicy PULL on the
   * registry's group (membership may have changed since the token was minted).
   */
  async verifyPullToken(authorizationHeader: string | undefined, registryId: number, repositoryName: string): Promise<Actor> {
    const { actor } = await this.verifyPullGrant(authorizationHeader, registryId, repositoryName);
    if (!actor) throw new RegistryAuthError('unauthorized', 'an anonymous token names no credential');
    return actor;
  }

  /**
   * verifyPullToken, with the moment the token expires (epoch milliseconds), for callers that remember the
   * answer. An anonymous token gives a null actor: the caller must check the registry allows anonymous pulls.
   */
  async verifyPullGrant(authorizationHeader: string | undefined, registryId: number, repositoryName: string): Promise<PullGrant> {
    const claims = await this.claims(bearerToken(authorizationHeader), REGISTRY_SERVICE);
    if (!accessCovers(claims.access, registryId, repositoryName)) {
      throw new RegistryAuthError('denied', 'the token does not grant pull on this repository');
    }
    const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : Date.now();
    return { actor: isAnonymous(claims) ? null : await this.actorOf(claims), expiresAt };
  }

  /** For `GET /v2/`: any valid registry token of a working credential (or an anonymous one), whatever it grants. */
  async verifyBearer(authorizationHeader: string | undefined): Promise<Actor | null> {
    const claims = await this.claims(bearerToken(authorizationHeader), REGISTRY_SERVICE);
    return isAnonymous(claims) ? null : this.actorOf(claims);
  }

  private async claims(token: string | undefined, audience: string): Promise<TokenClaims> {
    if (!token) throw new RegistryAuthError('unauthorized', 'authentication required');
    try {
      return (await this.keys.verify(token, audience)) as TokenClaims;
    } catch (err) {
      if (err instanceof InvalidTokenError) throw new RegistryAuthError('unauthorized', 'invalid or expired token');
      throw err;
    }
  }

  private async actorOf(claims: TokenClaims): Promise<Actor> {
    const { type, id } = claims.credential ?? {};
    const actor = (type === 'personal_access_token' || type === 'deploy_token') && typeof id === 'number' ? await this.credentials.resolve({ type, id }) : null;
    if (!actor) throw new RegistryAuthError('unauthorized', 'the credential behind this token no longer works');
    return actor;
  }
}

/** The subject of anonymous tokens (informational: anonymous tokens are told apart by their claims, never by name). */
const ANONYMOUS_SUBJECT = '-anonymous-';

function isAnonymous(claims: TokenClaims): boolean {
  return claims.anonymous === true && claims.credential === undefined;
}

/** The token of `Authorization: Bearer <token>`, if that is what the header holds. */
export function bearerToken(authorizationHeader: string | undefined): string | undefined {
  const match = authorizationHeader ? /^Bearer\s+(\S+)\s*$/i.exec(authorizationHeader) : null;
  return match?.[1];
}
