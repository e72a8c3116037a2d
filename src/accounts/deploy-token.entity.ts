import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';
import { TokenScope } from './actor.js';

/**
 * A group deploy token (table `deploy_tokens`): pulls through the registries of its one group, for CI and
 * clusters. The secret (`cvrdt-...`) is shown once at creation; only its SHA-256 digest is stored.
 */
@Entity({ name: 'deploy_tokens' })
export class DeployToken {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  groupId: number;

  @Column({ type: 'varchar', length: 255 })
  name: string;

  /** The login name to use with the secret (`gitlab+deploy-token-<id>` unless chosen at creation). */
  @Column({ type: 'varchar', length: 255 })
  username: string;

  @Column({ type: 'text', array: true })
  scopes: TokenScope[];

  @Column({ type: 'timestamptz', nullable: true })
  expiresAt: Date | null;

  @Column({ type: 'boolean', default: false })
  revoked: boolean;

  @Column({ type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null;

  /** Hex SHA-256 of the secret. */
  @Column({ type: 'char', length: 64, select: false })
  tokenDigest: string;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;
}
