import { plainToInstance } from 'class-transformer';
import { validate } from 'class-validator';
import { parseEnvironment } from '../config/environment.js';
import { CleanupPolicyCreateDto } from './cleanup-policy.dto.js';
import { DAY_MS, downloadCutoff, FAILURE_MESSAGE_MAX_LENGTH, nextRunAfter, truncateFailureMessage } from './cleanup-policy.entity.js';

const invalidFields = async (body: object) => (await validate(plainToInstance(CleanupPolicyCreateDto, body), { whitelist: true })).map((e) => e.property);

describe('cleanup policy', () => {
  it('runs one cadence after it was scheduled', () => {
    const from = new Date('2024-05-30T12:28:27.855Z');
    expect(nextRunAfter(from, 7).toISOString()).toBe('2024-06-06T12:28:27.855Z');
    expect(nextRunAfter(from, 1).getTime() - from.getTime()).toBe(DAY_MS);
  });

  it('removes entries last downloaded before now minus keep_n_days_after_download', () => {
    const now = new Date('2024-06-10T00:00:00.000Z');
    expect(downloadCutoff(now, 7).toISOString()).toBe('2024-06-03T00:00:00.000Z');
    expect(downloadCutoff(now, 365).toISOString()).toBe('2023-06-11T00:00:00.000Z');
  });

  it("keeps failure messages within GitLab's 255 characters", () => {
    expect(truncateFailureMessage('short')).toBe('short');
    const long = truncateFailureMessage('x'.repeat(1000));
    expect(long).toHaveLength(FAILURE_MESSAGE_MAX_LENGTH);
    expect(long.endsWith('...')).toBe(true);
  });

  it.each([
    [{}, []],
    [{ enabled: true, keep_n_days_after_download: 1, cadence: 1 }, []],
    [{ keep_n_days_after_download: 365, cadence: 90 }, []],
    [{ keep_n_days_after_download: 0 }, ['keep_n_days_after_download']],
    [{ keep_n_days_after_download: 366 }, ['keep_n_days_after_download']],
    [{ keep_n_days_after_download: 1.5 }, ['keep_n_days_after_download']],
    [{ cadence: 2 }, ['cadence']],
    [{ cadence: '7' }, ['cadence']],
    [{ enabled: 'true' }, ['enabled']],
  ])('validates %j (invalid: %j)', async (body, invalid) => {
    expect(await invalidFields(body)).toEqual(invalid);
  });
});

describe('lifecycle configuration', () => {
  it('has no storage quota and a one-hour orphan grace period by default', () => {
    const env = parseEnvironment({});
    expect(env.limits.groupStorageQuota).toBe(0);
    expect(env.storage.orphanGracePeriodMs).toBe(3_600_000);
  });

  it('reads GROUP_STORAGE_QUOTA as a size and ORPHAN_GRACE_PERIOD_MS in milliseconds', () => {
    const env = parseEnvironment({ GROUP_STORAGE_QUOTA: '300MiB', ORPHAN_GRACE_PERIOD_MS: '0' });
    expect(env.limits.groupStorageQuota).toBe(300 * 1024 ** 2);
    expect(env.storage.orphanGracePeriodMs).toBe(0);
    expect(() => parseEnvironment({ GROUP_STORAGE_QUOTA: 'lots' })).toThrow(/GROUP_STORAGE_QUOTA/);
    expect(() => parseEnvironment({ ORPHAN_GRACE_PERIOD_MS: '-1' })).toThrow(/ORPHAN_GRACE_PERIOD_MS/);
  });
});
