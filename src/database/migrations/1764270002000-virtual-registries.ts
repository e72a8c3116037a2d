import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Virtual registries: registries, upstreams, their ordered links and cache entries (SPEC section 2).
 * The invariants live in the database too: names unique per group, positions 1..N unique per registry
 * (deferrable, so a reorder can shift rows inside one transaction), credentials both-or-neither,
 * links and cache entries never crossing groups, one live (`default`) cache entry per upstream + path.
 */
export class VirtualRegistries1764270002000 implements MigrationInterface {
  name = 'VirtualRegistries1764270002000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE registries (
        id serial PRIMARY KEY,
        group_id integer NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        name varchar(255) NOT NULL,
        description varchar(1024),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT registries_name_present CHECK (length(btrim(name)) > 0),
        CONSTRAINT registries_group_id_name_key UNIQUE (group_id, name),
        CONSTRAINT registries_id_group_id_key UNIQUE (id, group_id)
      )`);

    await queryRunner.query(`
      CREATE TABLE upstreams (
        id serial PRIMARY KEY,
        group_id integer NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        name varchar(255) NOT NULL,
        description varchar(1024),
        url varchar(255) NOT NULL,
        username varchar(510),
        password_ciphertext text,
        credentials_key_id varchar(64),
        cache_validity_hours integer NOT NULL DEFAULT 24,
        auth_url varchar(2048),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT upstreams_name_present CHECK (length(btrim(name)) > 0),
        CONSTRAINT upstreams_url_http CHECK (url ~* '^https?://'),
        CONSTRAINT upstreams_cache_validity_hours_non_negative CHECK (cache_validity_hours >= 0),
        CONSTRAINT upstreams_credentials_both_or_neither CHECK ((username IS NULL) = (password_ciphertext IS NULL)),
        CONSTRAINT upstreams_credentials_key_with_ciphertext CHECK ((password_ciphertext IS NULL) = (credentials_key_id IS NULL)),
        CONSTRAINT upstreams_id_group_id_key UNIQUE (id, group_id)
      )`);
    await queryRunner.query(`CREATE INDEX upstreams_group_id_name_idx ON upstreams (group_id, name)`);

    await queryRunner.query(`
      CREATE TABLE registry_upstreams (
        id serial PRIMARY KEY,
        group_id integer NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        registry_id integer NOT NULL,
        upstream_id integer NOT NULL,
        position smallint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT registry_upstreams_position_range CHECK (position BETWEEN 1 AND 100),
        CONSTRAINT registry_upstreams_registry_fkey FOREIGN KEY (registry_id, group_id)
          REFERENCES registries (id, group_id) ON DELETE CASCADE,
        CONSTRAINT registry_upstreams_upstream_fkey FOREIGN KEY (upstream_id, group_id)
          REFERENCES upstreams (id, group_id) ON DELETE CASCADE,
        CONSTRAINT registry_upstreams_registry_id_position_key UNIQUE (registry_id, position)
          DEFERRABLE INITIALLY IMMEDIATE,
        CONSTRAINT registry_upstreams_registry_id_upstream_id_key UNIQUE (registry_id, upstream_id)
      )`);
    await queryRunner.query(`CREATE INDEX registry_upstreams_upstream_id_idx ON registry_upstreams (upstream_id)`);

    await queryRunner.query(`
      CREATE TABLE cache_entries (
        id bigserial PRIMARY KEY,
        group_id integer NOT NULL,
        upstream_id integer NOT NULL,
        relative_path text NOT NULL,
        digest varchar(71) NOT NULL,
        size bigint NOT NULL,
        content_type varchar(255) NOT NULL DEFAULT 'application/octet-stream',
        upstream_etag varchar(255),
        upstream_checked_at timestamptz NOT NULL DEFAULT now(),
        downloads_count bigint NOT NULL DEFAULT 0,
        downloaded_at timestamptz NOT NULL DEFAULT now(),
        file_sha1 varchar(40),
        storage_key text NOT NULL,
        status varchar(32) NOT NULL DEFAULT 'default',
        error_message text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT cache_entries_upstream_fkey FOREIGN KEY (upstream_id, group_id)
          REFERENCES upstreams (id, group_id) ON DELETE CASCADE,
        CONSTRAINT cache_entries_relative_path_length CHECK (length(relative_path) BETWEEN 1 AND 4096),
        CONSTRAINT cache_entries_digest_format CHECK (digest ~ '^sha256:[a-f0-9]{64}$'),
        CONSTRAINT cache_entries_size_non_negative CHECK (size >= 0),
        CONSTRAINT cache_entries_downloads_count_non_negative CHECK (downloads_count >= 0),
        CONSTRAINT cache_entries_file_sha1_format CHECK (file_sha1 IS NULL OR file_sha1 ~ '^[a-f0-9]{40}$'),
        CONSTRAINT cache_entries_status_valid
          CHECK (status IN ('default', 'processing', 'pending_destruction', 'error'))
      )`);
    // One live entry per (upstream, path); superseded and purged rows may coexist with it.
    await queryRunner.query(`
      CREATE UNIQUE INDEX cache_entries_live_upstream_id_relative_path_key
        ON cache_entries (upstream_id, relative_path) WHERE status = 'default'`);
    await queryRunner.query(`CREATE INDEX cache_entries_upstream_id_status_idx ON cache_entries (upstream_id, status)`);
    // Least-recently-downloaded eviction per group.
    await queryRunner.query(`CREATE INDEX cache_entries_group_id_downloaded_at_idx ON cache_entries (group_id, downloaded_at)`);
    // "Is this digest still referenced?" before an object is removed from storage.
    await queryRunner.query(`CREATE INDEX cache_entries_digest_idx ON cache_entries (digest)`);
    // The destroy job's batches.
    await queryRunner.query(`
      CREATE INDEX cache_entries_pending_destruction_idx ON cache_entries (id) WHERE status = 'pending_destruction'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE cache_entries`);
    await queryRunner.query(`DROP TABLE registry_upstreams`);
    await queryRunner.query(`DROP TABLE upstreams`);
    await queryRunner.query(`DROP TABLE registries`);
  }
}
