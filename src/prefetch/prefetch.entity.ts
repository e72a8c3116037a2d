import {
  Column,
  CreateDateColumn,
  Entity,
  OneToMany,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
  type Relation,
  ValueTransformer,
  ManyToOne,
  JoinColumn,
} from 'typeorm';

export enum PrefetchImageStatus {
  PENDING = 'pending',
  RUNNING = 'running',
  DONE = 'done',
  FAILED = 'failed',
}

const bigintAsNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | null) => (value === null ? null : Number(value)),
};

/** A request to fill a registry's cache with some images before anyone pulls them. */
@Entity({ name: 'prefetches' })
export class Prefetch {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  registryId: number;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @OneToMany(() => PrefetchImage, (image) => image.prefetch)
  images?: Relation<PrefetchImage>[];
}

/** One image of a prefetch and how far its PREFETCH_IMAGE job got. */
@Entity({ name: 'prefetch_images' })
export class PrefetchImage {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  prefetchId: number;

  @ManyToOne(() => Prefetch, (prefetch) => prefetch.images, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'prefetch_id' })
  prefetch?: Relation<Prefetch>;

  @Column({ type: 'smallint' })
  position: number;

  @Column({ type: 'varchar', length: 255 })
  repository: string;

  /** A tag or `sha256:<hex>`. */
  @Column({ type: 'varchar', length: 255 })
  reference: string;

  /** `os/arch[/variant]` of an index to fill; null: all of them. */
  @Column({ type: 'jsonb', nullable: true })
  platforms: string[] | null;

  @Column({ type: 'varchar', length: 16, default: PrefetchImageStatus.PENDING })
  status: PrefetchImageStatus;

  /** Why it failed (the upstream's answer, as a pull client would have seen it). */
  @Column({ type: 'varchar', length: 1024, nullable: true })
  reason: string | null;

  /** Manifests (index and children) in the cache so far. */
  @Column({ type: 'integer', default: 0 })
  manifests: number;

  /** Blobs (configs and layers) in the cache so far. */
  @Column({ type: 'integer', default: 0 })
  blobs: number;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  bytes: number;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;
}
