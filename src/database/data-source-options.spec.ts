import { DEFAULT_POOL_IDLE_TIMEOUT_MS, dataSourceOptions } from './data-source-options.js';

describe('dataSourceOptions', () => {
  it("hands the pool's size and idle timeout to pg (whose own default closes an idle connection after 10 s)", () => {
    expect(dataSourceOptions('postgres://db/x', { size: 7, idleTimeoutMs: 120_000 }).extra).toMatchObject({ max: 7, idleTimeoutMillis: 120_000 });
    expect(dataSourceOptions('postgres://db/x', { size: 3, idleTimeoutMs: 0 }).extra).toMatchObject({ max: 3, idleTimeoutMillis: 0 });
  });

  it('gives a one-connection pool that keeps its connection by default (the migration command)', () => {
    expect(dataSourceOptions('postgres://db/x').extra).toMatchObject({ max: 1, idleTimeoutMillis: DEFAULT_POOL_IDLE_TIMEOUT_MS });
  });

  it('never synchronizes the schema: migrations only', () => {
    expect(dataSourceOptions('postgres://db/x')).toMatchObject({ synchronize: false, migrationsRun: false });
  });
});
