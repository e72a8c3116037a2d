import { RedisConnections } from '../redis/redis-connections.js';
import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { waitFor } from '../../test/support/eventually.js';
import { LocalFillLock, RedisFillLock, isPeerOrigin, newFillHolder, type FillClaim } from './fill-lock.js';

Logger.overrideLogger(['error']);

const redisUrl = process.env.REDIS_URL;
const describeWithRedis = redisUrl ? describe : describe.skip;
const suiteName = redisUrl ? `RedisFillLock on ${redisUrl}` : 'RedisFillLock (skipped: REDIS_URL is unset, no Redis to run against)';

const leaseOf = (claim: FillClaim) => ('lease' in claim ? claim.lease : undefined);

describe('fill holders', () => {
  it('announce a random token, and a peer URL only in processes that listen', () => {
    const a = newFillHolder('http://10.0.0.5:3000');
    expect(a).toEqual({ token: expect.stringMatching(/^[0-9a-f-]{36}$/), peerUrl: 'http://10.0.0.5:3000' });
    expect(newFillHolder(undefined)).toEqual({ token: expect.any(String) });
    expect(newFillHolder(undefined).token).not.toBe(a.token);
  });

  it.each([
    ['http://10.0.0.5:3000', true],
    ['http://[::1]:3000', true],
    ['http://api-1:3000', true],
    ['http://api-1:3000/', false],
    ['http://api-1:3000/other?x=', false],
    ['http://evil.example/#', false],
    ['http://user:pw@api-1:3000', false],
    ['https://api-1:3000', false],
    ['file:///etc/passwd', false],
    ['not a url', false],
  ])('a peer URL from Redis is followed only as a plain http origin: %s -> %s', (value, ok) => {
    expect(isPeerOrigin(value)).toBe(ok);
  });

  it('one process (no Redis): every claim is granted', async () => {
    const lock = new LocalFillLock();
    expect(leaseOf(await lock.claim())).toBeDefined();
    expect(leaseOf(await lock.claim())).toBeDefined();
  });
});

describeWithRedis(suiteName, () => {
  const prefix = `cvr-test-fill-${randomUUID()}`;
  const locks: RedisFillLock[] = [];
  const connections: RedisConnections[] = [];
  /** Each lock stands for a replica, with its own RedisModule connections. */
  const newLock = (ttlMs?: number) => {
    const redis = new RedisConnections(redisUrl);
    connections.push(redis);
    const lock = new RedisFillLock(redis, prefix, ttlMs);
    locks.push(lock);
    return lock;
  };

  afterAll(async () => {
    await Promise.all(locks.map((l) => l.close()));
    await Promise.all(connections.map((c) => c.close()));
    const redis = new Redis(redisUrl!);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });

  it('grants the first claim; a second claim learns who holds it; after release the next claim wins', async () => {
    const [a, b] = [newLock(), newLock()];
    const holderA = newFillHolder('http://127.0.0.1:4001');
    const holderB = newFillHolder('http://127.0.0.1:4002');
    const first = await a.claim('1 /x/blobs/sha256:aa', holderA);
    expect(leaseOf(first)).toBeDefined();
    expect(await b.claim('1 /x/blobs/sha256:aa', holderB)).toEqual({ heldBy: holderA });
    // another key, or the same path of another upstream, is another fill
    expect(leaseOf(await b.claim('2 /x/blobs/sha256:aa', holderB))).toBeDefined();
    await leaseOf(first)!.release();
    expect(leaseOf(await b.claim('1 /x/blobs/sha256:aa', holderB))).toBeDefined();
  });

  it('takes over a dead holder only while that holder still holds the claim', async () => {
    const [a, b] = [newLock(), newLock()];
    const dead = newFillHolder('http://127.0.0.1:4003');
    await a.claim('1 /y', dead);
    const stranger = newFillHolder('http://127.0.0.1:4009');
    expect(await b.takeOver('1 /y', stranger)).toBe(false);
    expect(await b.claim('1 /y', newFillHolder(undefined))).toEqual({ heldBy: dead });
    expect(await b.takeOver('1 /y', dead)).toBe(true);
    expect(leaseOf(await b.claim('1 /y', newFillHolder(undefined)))).toBeDefined();
  });

  it('a lease nobody renews (its process died) expires by itself; a renewed one does not', async () => {
    const [a, b] = [newLock(400), newLock(400)];
    const renewed = leaseOf(await a.claim('1 /renewed', newFillHolder(undefined)))!;
    const redis = new Redis(redisUrl!);
    try {
      // A lease whose renewals stopped: written the way a holder writes it, never renewed.
      await redis.set(`${prefix}:cvr-fill:1 /orphaned`, JSON.stringify(newFillHolder('http://127.0.0.1:4004')), 'PX', 400);
      // Renewals are background work: watch the held lease's remaining time go back up, twice, while
      // the orphaned one runs out (by then the held lease, claimed first, would have run out too).
      let renewals = 0;
      let remaining = await redis.pttl(`${prefix}:cvr-fill:1 /renewed`);
      await waitFor('two renewals of the held lease and the end of the orphaned one', async () => {
        const now = await redis.pttl(`${prefix}:cvr-fill:1 /renewed`);
        if (now > remaining) renewals++;
        remaining = now;
        return renewals >= 2 && (await redis.exists(`${prefix}:cvr-fill:1 /orphaned`)) === 0;
      });
      expect(leaseOf(await b.claim('1 /orphaned', newFillHolder(undefined)))).toBeDefined();
      expect('heldBy' in (await b.claim('1 /renewed', newFillHolder(undefined)))).toBe(true);
      await renewed.release();
    } finally {
      await redis.quit();
    }
  });

  it('a lease value it cannot follow (an older version, or a peer URL with a path) is held but names no peer', async () => {
    const lock = newLock();
    const redis = new Redis(redisUrl!);
    try {
      await redis.set(`${prefix}:cvr-fill:1 /old`, randomUUID(), 'PX', 5000);
      expect(await lock.claim('1 /old', newFillHolder(undefined))).toEqual({ heldBy: { token: '' } });
      const token = randomUUID();
      await redis.set(`${prefix}:cvr-fill:1 /path`, JSON.stringify({ token, peerUrl: 'http://10.0.0.1/anything?' }), 'PX', 5000);
      expect(await lock.claim('1 /path', newFillHolder(undefined))).toEqual({ heldBy: { token } });
    } finally {
      await redis.quit();
    }
  });
});
