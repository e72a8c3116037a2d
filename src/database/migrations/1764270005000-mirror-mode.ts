import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Mirror mode (issue 14): an upstream may declare the registry hosts it mirrors (`?ns=` routing), and
 * a registry may allow anonymous pulls (off for every existing registry).
 */
export class MirrorMode1764270005000 implements MigrationInterface {
  name = 'MirrorMode1764270005000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE upstreams ADD COLUMN mirror_hosts text[] NOT NULL DEFAULT '{}'`);
    await queryRunner.query(`
      ALTER TABLE upstreams ADD CONSTRAINT upstreams_mirror_hosts_count CHECK (cardinality(mirror_hosts) <= 20)`);
    await queryRunner.query(`ALTER TABLE registries ADD COLUMN anonymous_pull boolean NOT NULL DEFAULT false`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE registries DROP COLUMN anonymous_pull`);
    await queryRunner.query(`ALTER TABLE upstreams DROP CONSTRAINT upstreams_mirror_hosts_count`);
    await queryRunner.query(`ALTER TABLE upstreams DROP COLUMN mirror_hosts`);
  }
}
