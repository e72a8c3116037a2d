import { ApiProperty } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsInt, IsOptional, Max, Min } from 'class-validator';
import {
  CLEANUP_POLICY_CADENCES,
  CleanupPolicyStatus,
  KEEP_N_DAYS_AFTER_DOWNLOAD_MAX,
  KEEP_N_DAYS_AFTER_DOWNLOAD_MIN,
  type CleanupPolicy,
  type CleanupPolicyCadence,
} from './cleanup-policy.entity.js';

const CADENCE_DESCRIPTION = 'How often the cleanup policy runs, in days: 1 (daily), 7 (weekly), 14 (bi-weekly), 30 (monthly) or 90 (quarterly).';
const KEEP_DESCRIPTION = `Cache entries not downloaded for this many days are removed (${KEEP_N_DAYS_AFTER_DOWNLOAD_MIN} to ${KEEP_N_DAYS_AFTER_DOWNLOAD_MAX}).`;

export class CleanupPolicyCreateDto {
  @ApiProperty({ required: false, default: false, description: 'Enable or disable the cleanup policy.', example: true })
  @IsOptional()
  @IsBoolean()
  enabled?: boolean;

  @ApiProperty({
    type: 'integer',
    required: false,
    default: 30,
    minimum: KEEP_N_DAYS_AFTER_DOWNLOAD_MIN,
    maximum: KEEP_N_DAYS_AFTER_DOWNLOAD_MAX,
    description: KEEP_DESCRIPTION,
    example: 30,
  })
  @IsOptional()
  @IsInt()
  @Min(KEEP_N_DAYS_AFTER_DOWNLOAD_MIN)
  @Max(KEEP_N_DAYS_AFTER_DOWNLOAD_MAX)
  keep_n_days_after_download?: number;

  @ApiProperty({ type: 'integer', required: false, default: 7, enum: CLEANUP_POLICY_CADENCES, description: CADENCE_DESCRIPTION, example: 7 })
  @IsOptional()
  @IsIn(CLEANUP_POLICY_CADENCES as unknown as number[], { message: `cadence must be one of ${CLEANUP_POLICY_CADENCES.join(', ')}` })
  cadence?: CleanupPolicyCadence;
}

/** At least one field must be given. */
export class CleanupPolicyUpdateDto extends CleanupPolicyCreateDto {}

export class CleanupPolicyRunMetricsDto {
  @ApiProperty({ type: 'integer', description: 'Cache entries removed by the last run.', example: 25 })
  deleted_entries_count: number;

  @ApiProperty({ type: 'integer', description: 'Bytes of the cache entries removed by the last run.', example: 1048576 })
  deleted_size: number;
}

export class CleanupPolicyDetailedMetricsDto {
  @ApiProperty({ type: CleanupPolicyRunMetricsDto, required: false, description: 'Container cache entries (absent before the first run).' })
  container?: CleanupPolicyRunMetricsDto;
}

export class CleanupPolicyResponseDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the group.', example: 5 })
  group_id: number;

  @ApiProperty({ description: 'Whether the policy runs.', example: true })
  enabled: boolean;

  @ApiProperty({ type: 'integer', description: KEEP_DESCRIPTION, example: 30 })
  keep_n_days_after_download: number;

  @ApiProperty({ type: 'integer', enum: CLEANUP_POLICY_CADENCES, description: CADENCE_DESCRIPTION, example: 7 })
  cadence: number;

  @ApiProperty({
    enum: CleanupPolicyStatus,
    description: 'scheduled (waiting for next_run_at), running, or failed (the last run failed; it runs again at next_run_at).',
    example: 'scheduled',
  })
  status: CleanupPolicyStatus;

  @ApiProperty({
    type: String,
    format: 'date-time',
    nullable: true,
    description: 'When the policy runs next (when enabled).',
    example: '2024-06-06T12:28:27.855Z',
  })
  next_run_at: string | null;

  @ApiProperty({ type: String, format: 'date-time', nullable: true, description: 'When the policy last ran.', example: '2024-05-30T12:28:27.855Z' })
  last_run_at: string | null;

  @ApiProperty({ type: 'integer', description: 'Cache entries removed by the last successful run.', example: 25 })
  last_run_deleted_entries_count: number;

  @ApiProperty({ type: 'integer', description: 'Bytes of the cache entries removed by the last successful run.', example: 1048576 })
  last_run_deleted_size: number;

  @ApiProperty({ type: Number, nullable: true, description: 'How long the last run took, in seconds.', example: 0.42 })
  last_run_duration: number | null;

  @ApiProperty({ type: String, nullable: true, description: 'Why the last run failed (null after a successful run).', example: null })
  failure_message: string | null;

  @ApiProperty({ type: CleanupPolicyDetailedMetricsDto, description: "The last run's figures per package format." })
  last_run_detailed_metrics: CleanupPolicyDetailedMetricsDto;

  @ApiProperty({ format: 'date-time', description: 'When the policy was created.', example: '2024-05-30T12:28:27.855Z' })
  created_at: string;

  @ApiProperty({ format: 'date-time', description: 'When the policy was last updated.', example: '2024-05-30T12:28:27.855Z' })
  updated_at: string;

  static from(policy: CleanupPolicy): CleanupPolicyResponseDto {
    return Object.assign(new CleanupPolicyResponseDto(), {
      group_id: policy.groupId,
      enabled: policy.enabled,
      keep_n_days_after_download: policy.keepNDaysAfterDownload,
      cadence: policy.cadence,
      status: policy.status,
      next_run_at: policy.nextRunAt?.toISOString() ?? null,
      last_run_at: policy.lastRunAt?.toISOString() ?? null,
      last_run_deleted_entries_count: policy.lastRunDeletedEntriesCount,
      last_run_deleted_size: policy.lastRunDeletedSize,
      last_run_duration: policy.lastRunDuration,
      failure_message: policy.failureMessage,
      last_run_detailed_metrics: policy.lastRunAt
        ? { container: { deleted_entries_count: policy.lastRunDeletedEntriesCount, deleted_size: policy.lastRunDeletedSize } }
        : {},
      created_at: policy.createdAt.toISOString(),
      updated_at: policy.updatedAt.toISOString(),
    });
  }
}
