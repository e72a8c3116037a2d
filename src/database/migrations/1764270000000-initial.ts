import { MigrationInterface, QueryRunner } from 'typeorm';

/** Foundation: nothing domain-specific yet, only what every later migration relies on. */
export class Initial1764270000000 implements MigrationInterface {
  name = 'Initial1764270000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // A key/value table for instance-wide state (e.g. that bootstrap ran, signing key ids).
    await queryRunner.query(`
      CREATE TABLE instance_settings (
        key varchar(255) PRIMARY KEY,
        value jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE instance_settings`);
  }
}
