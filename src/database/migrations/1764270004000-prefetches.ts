import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Pre-warming (issue 15): a prefetch asks a registry to fill its cache with a list of images, each
 * filled by one PREFETCH_IMAGE job whose progress is kept on its row, so any replica (and the worker)
 * reports it and a restart re-queues what was not finished.
 */
export class Prefetches1764270004000 implements MigrationInterface {
  name = 'Prefetches1764270004000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE prefetches (
        id serial PRIMARY KEY,
        registry_id integer NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`CREATE INDEX prefetches_registry_id_idx ON prefetches (registry_id)`);
    await queryRunner.query(`
      CREATE TABLE prefetch_images (
        id serial PRIMARY KEY,
        prefetch_id integer NOT NULL REFERENCES prefetches (id) ON DELETE CASCADE,
        position smallint NOT NULL,
        repository varchar(255) NOT NULL,
        reference varchar(255) NOT NULL,
        platforms jsonb,
        status varchar(16) NOT NULL DEFAULT 'pending',
        reason varchar(1024),
        manifests integer NOT NULL DEFAULT 0,
        blobs integer NOT NULL DEFAULT 0,
        bytes bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT prefetch_images_status_valid CHECK (status IN ('pending', 'running', 'done', 'failed')),
        CONSTRAINT prefetch_images_prefetch_id_position_key UNIQUE (prefetch_id, position)
      )`);
    // What a restart re-queues.
    await queryRunner.query(`CREATE INDEX prefetch_images_unfinished_idx ON prefetch_images (id) WHERE status IN ('pending', 'running')`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE prefetch_images`);
    await queryRunner.query(`DROP TABLE prefetches`);
  }
}
