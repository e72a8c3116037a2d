import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn, ValueTransformer } from 'typeorm';

/** How often a policy runs, in days (GitLab's values: daily, weekly, bi-weekly, monthly, quarterly). */
export const CLEANUP_POLICY_CADENCES = [1, 7, 14, 30, 90] as const;
export type CleanupPolicyCadence = (typeof CLEANUP_POLICY_CADENCES)[number];

export const KEEP_N_DAYS_AFTER_DOWNLOAD_MIN = 1;
export const KEEP_N_DAYS_AFTER_DOWNLOAD_MAX = 365;

export enum CleanupPolicyStatus {
  /** Waiting for next_run_at. */
  SCHEDULED = 'scheduled',
  RUNNING = 'running',
  /** The last run failed (failure_message says why); it runs again at next_run_at. */
  FAILED = 'failed',
}

const bigintAsNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | null) => (value === null ? null : Number(value)),
};

/**
 * A group's cleanup policy (at most one per group): cache entries not downloaded for
 * `keepNDaysAfterDownload` days are handed to the destroy job, every `cadence` days.
 */
@Entity({ name: 'cleanup_policies' })
export class CleanupPolicy {
  @PrimaryGeneratedColumn()
  id: number;

  @Column({ type: 'integer' })
  groupId: number;

  @Column({ type: 'boolean', default: false })
  enabled: boolean;

  // Named explicitly: the snake-case naming strategy would make it keep_ndays_after_download.
  @Column({ name: 'keep_n_days_after_download', type: 'integer', default: 30 })
  keepNDaysAfterDownload: number;

  @Column({ type: 'smallint', default: 7 })
  cadence: CleanupPolicyCadence;

  @Column({ type: 'varchar', length: 16, default: CleanupPolicyStatus.SCHEDULED })
  status: CleanupPolicyStatus;

  @Column({ type: 'timestamptz', nullable: true })
  nextRunAt: Date | null;

  @Column({ type: 'timestamptz', nullable: true })
  lastRunAt: Date | null;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  lastRunDeletedEntriesCount: number;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  lastRunDeletedSize: number;

  /** Seconds the last run took. */
  @Column({ type: 'double precision', nullable: true })
  lastRunDuration: number | null;

  @Column({ type: 'varchar', length: 255, nullable: true })
  failureMessage: string | null;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;
}

/** When a policy runs next: `cadence` days after `from` (its creation, a cadence change, or its last run). */
export function nextRunAfter(from: Date, cadence: number): Date {
  return new Date(from.getTime() + cadence * DAY_MS);
}

/** Entries last downloaded before this instant are removed by a policy keeping `keepNDays` days. */
export function downloadCutoff(now: Date, keepNDays: number): Date {
  return new Date(now.getTime() - keepNDays * DAY_MS);
}

export const DAY_MS = 24 * 60 * 60 * 1000;

/** GitLab's limit on failure_message. */
export const FAILURE_MESSAGE_MAX_LENGTH = 255;

export function truncateFailureMessage(message: string): string {
  return message.length <= FAILURE_MESSAGE_MAX_LENGTH ? message : `${message.slice(0, FAILURE_MESSAGE_MAX_LENGTH - 3)}...`;
}
