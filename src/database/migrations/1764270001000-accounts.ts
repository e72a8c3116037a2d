import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Accounts: groups (tenants), users, memberships, personal access tokens and group deploy tokens.
 * Token secrets are never stored: only their SHA-256 digest (hex), unique so a lookup is one index probe.
 */
export class Accounts1764270001000 implements MigrationInterface {
  name = 'Accounts1764270001000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE groups (
        id serial PRIMARY KEY,
        path varchar(255) NOT NULL,
        name varchar(255) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    // Paths are unique regardless of case, as in GitLab.
    await queryRunner.query(`CREATE UNIQUE INDEX groups_path_key ON groups (lower(path))`);

    await queryRunner.query(`
      CREATE TABLE users (
        id serial PRIMARY KEY,
        username varchar(255) NOT NULL,
        email varchar(255),
        admin boolean NOT NULL DEFAULT false,
        state varchar(16) NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'blocked')),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`CREATE UNIQUE INDEX users_username_key ON users (lower(username))`);

    await queryRunner.query(`
      CREATE TABLE members (
        id serial PRIMARY KEY,
        group_id integer NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        access_level smallint NOT NULL CHECK (access_level IN (10, 20, 30, 40, 50)),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT members_group_user_key UNIQUE (group_id, user_id)
      )`);
    await queryRunner.query(`CREATE INDEX members_user_id_idx ON members (user_id)`);

    await queryRunner.query(`
      CREATE TABLE personal_access_tokens (
        id serial PRIMARY KEY,
        user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name varchar(255) NOT NULL,
        scopes text[] NOT NULL,
        expires_at date,
        revoked boolean NOT NULL DEFAULT false,
        last_used_at timestamptz,
        token_digest char(64) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT personal_access_tokens_token_digest_key UNIQUE (token_digest)
      )`);
    await queryRunner.query(`CREATE INDEX personal_access_tokens_user_id_idx ON personal_access_tokens (user_id)`);

    await queryRunner.query(`
      CREATE TABLE deploy_tokens (
        id serial PRIMARY KEY,
        group_id integer NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        name varchar(255) NOT NULL,
        username varchar(255) NOT NULL,
        scopes text[] NOT NULL,
        expires_at timestamptz,
        revoked boolean NOT NULL DEFAULT false,
        last_used_at timestamptz,
        token_digest char(64) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT deploy_tokens_token_digest_key UNIQUE (token_digest)
      )`);
    await queryRunner.query(`CREATE INDEX deploy_tokens_group_id_idx ON deploy_tokens (group_id)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE deploy_tokens`);
    await queryRunner.query(`DROP TABLE personal_access_tokens`);
    await queryRunner.query(`DROP TABLE members`);
    await queryRunner.query(`DROP TABLE users`);
    await queryRunner.query(`DROP TABLE groups`);
  }
}
