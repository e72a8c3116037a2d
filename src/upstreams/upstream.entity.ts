import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/**
 * A remote registry content is pulled from (table `upstreams`). The password is stored only as
 * AES-256-GCM ciphertext with the id of the key that sealed it (see CredentialEncryptionService);
 * username and password are both set or both null (a database CHECK).
 */
@Entity({ name: 'upstreams' })
export class Upstream {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  groupId: number;

  @Column({ type: 'varchar', length: 255 })
  name: string;

  @Column({ type: 'varchar', length: 1024, nullable: true })
  description: string | null;

  /** Normalised: http(s), no trailing `/` nor `/v2`. */
  @Column({ type: 'varchar', length: 255 })
  url: string;

  @Column({ type: 'varchar', length: 510, nullable: true })
  username: string | null;

  @Column({ type: 'text', nullable: true })
  passwordCiphertext: string | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  credentialsKeyId: string | null;

  /** How long a cached tag is served without asking the upstream; 0 = tags never go stale. */
  @Column({ type: 'integer', default: 24 })
  cacheValidityHours: number;

  /** The token realm the upstream last challenged with (remembered to skip the first 401 round trip). */
  @Column({ type: 'varchar', length: 2048, nullable: true })
  authUrl: string | null;

  /**
   * Registry hosts this upstream serves besides its URL's own (it is itself a mirror, e.g. a private
   * cache of Docker Hub declares `docker.io`): a request with `?ns=<host>` is sent to it too.
   */
  @Column({ type: 'text', array: true, default: () => "'{}'" })
  mirrorHosts: string[];

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;

  get hasCredentials(): boolean {
    return this.username !== null && this.passwordCiphertext !== null;
  }
}
