import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/**
 * The link between a registry and one of its upstreams, with its position (1..N, unique per registry,
 * no gaps). Both ends belong to the same group (composite foreign keys in the database).
 */
@Entity({ name: 'registry_upstreams' })
export class RegistryUpstream {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  groupId: number;

  @Column({ type: 'integer' })
  registryId: number;

  @Column({ type: 'integer' })
  upstreamId: number;

  @Column({ type: 'smallint' })
  position: number;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;
}
