import { Column, CreateDateColumn, Entity, JoinColumn, ManyToOne, PrimaryGeneratedColumn, type Relation, UpdateDateColumn } from 'typeorm';
import { TokenScope } from './actor.js';
import { User } from './user.entity.js';

/**
 * A user's personal access token (table `personal_access_tokens`). The secret (`cvrpat-...`) is shown once
 * at creation; only its SHA-256 digest is stored.
 */
@Entity({ name: 'personal_access_tokens' })
export class PersonalAccessToken {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  userId: number;

  @ManyToOne(() => User, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'user_id' })
  user?: Relation<User>;

  @Column({ type: 'varchar', length: 255 })
  name: string;

  @Column({ type: 'text', array: true })
  scopes: TokenScope[];

  /** A date (`YYYY-MM-DD`, UTC); the token stops working at the start of that day, as in GitLab. */
  @Column({ type: 'date', nullable: true })
  expiresAt: string | null;

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
