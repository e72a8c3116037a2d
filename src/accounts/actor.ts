/**
 * Who is calling, once a credential has been checked. Shared contract between the auth module
 * (which produces it) and every module that checks permissions (which consumes it).
 */
export enum AccessLevel {
  GUEST = 10,
  REPORTER = 20,
  DEVELOPER = 30,
  MAINTAINER = 40,
  OWNER = 50,
}

export enum TokenScope {
  API = 'api',
  READ_VIRTUAL_REGISTRY = 'read_virtual_registry',
}

/** What an admin-API or pull action needs on a group. */
export enum GroupPermission {
  /** Pull through the group's registries (scope read_virtual_registry, guest+ or a deploy token of the group). */
  PULL = 'pull',
  /** Read admin resources (reporter+). */
  READ = 'read',
  /** Create, update, delete registries, upstreams, links, cache entries (maintainer+). */
  WRITE = 'write',
  /** Group settings: cleanup policy, members, deploy tokens, deleting the group (owner). */
  SETTINGS = 'settings',
}

export type Actor =
  | {
      kind: 'user';
      userId: number;
      username: string;
      admin: boolean;
      /** Scopes of the credential used (PAT scopes, or the scopes granted in the JWT). */
      scopes: TokenScope[];
      /** The personal access token behind this request (revocation is checked on every request). */
      tokenId: number;
    }
  | {
      kind: 'deploy_token';
      deployTokenId: number;
      /** The only group a deploy token can act on. */
      groupId: number;
      username: string;
      admin: false;
      scopes: TokenScope[];
      tokenId: number;
    };

/** A user acting through one of its personal access tokens. */
export type UserActor = Extract<Actor, { kind: 'user' }>;

/** A group deploy token. */
export type DeployTokenActor = Extract<Actor, { kind: 'deploy_token' }>;
