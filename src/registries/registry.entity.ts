import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/** A virtual registry: one pull endpoint in front of an ordered list of upstreams (table `registries`). */
@Entity({ name: 'registries' })
export class Registry {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  groupId: number;

  @Column({ type: 'varchar', length: 255 })
  name: string;

  @Column({ type: 'varchar', length: 1024, nullable: true })
  description: string | null;

  /** Anyone may pull without credentials (set by a group owner; off by default). */
  @Column({ type: 'boolean', default: false })
  anonymousPull: boolean;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;
}
