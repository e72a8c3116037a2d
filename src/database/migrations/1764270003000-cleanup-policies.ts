import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Cache lifecycle (SPEC section 6): one cleanup policy per group (GitLab's virtual registries cleanup
 * policy), and an index for the destroy job's recovery of claimed (`processing`) and failed (`error`)
 * cache entries.
 */
export class CleanupPolicies1764270003000 implements MigrationInterface {
  name = 'CleanupPolicies1764270003000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE cleanup_policies (
        id serial PRIMARY KEY,
        group_id integer NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        enabled boolean NOT NULL DEFAULT false,
        keep_n_days_after_download integer NOT NULL DEFAULT 30,
        cadence smallint NOT NULL DEFAULT 7,
        status varchar(16) NOT NULL DEFAULT 'scheduled',
        next_run_at timestamptz,
        last_run_at timestamptz,
        last_run_deleted_entries_count bigint NOT NULL DEFAULT 0,
        last_run_deleted_size bigint NOT NULL DEFAULT 0,
        last_run_duration double precision,
        failure_message varchar(255),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT cleanup_policies_group_id_key UNIQUE (group_id),
        CONSTRAINT cleanup_policies_keep_n_days_after_download_range CHECK (keep_n_days_after_download BETWEEN 1 AND 365),
        CONSTRAINT cleanup_policies_cadence_valid CHECK (cadence IN (1, 7, 14, 30, 90)),
        CONSTRAINT cleanup_policies_status_valid CHECK (status IN ('scheduled', 'running', 'failed')),
        CONSTRAINT cleanup_policies_last_run_deleted_entries_count_non_negative CHECK (last_run_deleted_entries_count >= 0),
        CONSTRAINT cleanup_policies_last_run_deleted_size_non_negative CHECK (last_run_deleted_size >= 0),
        CONSTRAINT cleanup_policies_last_run_duration_non_negative CHECK (last_run_duration IS NULL OR last_run_duration >= 0)
      )`);
    // The policies due to run, as the RUN_CLEANUP_POLICIES job asks for them.
    await queryRunner.query(`
      CREATE INDEX cleanup_policies_runnable_next_run_at_idx
        ON cleanup_policies (next_run_at) WHERE enabled AND status IN ('scheduled', 'failed')`);
    // Claimed entries of a worker that died, and failed destructions to retry.
    await queryRunner.query(`
      CREATE INDEX cache_entries_destruction_recovery_idx
        ON cache_entries (updated_at) WHERE status IN ('processing', 'error')`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX cache_entries_destruction_recovery_idx`);
    await queryRunner.query(`DROP TABLE cleanup_policies`);
  }
}
