import { randomUUID } from 'node:crypto';
import { RedisConnections } from '../redis/redis-connections.js';
import { LocalInvalidationBus, RedisInvalidationBus } from './invalidation-bus.js';

async function eventually(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('not within time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('LocalInvalidationBus', () => {
  it('runs every listener synchronously inside changed()', () => {
    const bus = new LocalInvalidationBus();
    const heard: string[] = [];
    bus.onChange(() => heard.push('a'));
    bus.onChange(() => heard.push('b'));
    bus.changed('test');
    expect(heard).toEqual(['a', 'b']);
  });
});

const redisUrl = process.env.REDIS_URL;
const redisSuite = redisUrl ? describe : describe.skip;

redisSuite(`RedisInvalidationBus${redisUrl ? ` on ${redisUrl}` : ' (skipped: REDIS_URL is unset)'}`, () => {
  const prefix = `cvr-bus-test-${randomUUID()}`;
  let a: RedisInvalidationBus;
  let b: RedisInvalidationBus;
  let other: RedisInvalidationBus;
  // one RedisModule per simulated replica
  const connections = [new RedisConnections(redisUrl), new RedisConnections(redisUrl), new RedisConnections(redisUrl)];

  beforeAll(async () => {
    a = new RedisInvalidationBus(connections[0], prefix);
    b = new RedisInvalidationBus(connections[1], prefix);
    other = new RedisInvalidationBus(connections[2], `${prefix}-other`);
    await Promise.all([a, b, other].map((bus) => bus.subscribed));
  });
  afterAll(async () => {
    await Promise.all([a, b, other].map((bus) => bus.close()));
    await Promise.all(connections.map((c) => c.close()));
  });

  it('runs the local listeners at once and the other replicas listeners when the message arrives, once each', async () => {
    const heard = { a: 0, b: 0, other: 0 };
    a.onChange(() => heard.a++);
    b.onChange(() => heard.b++);
    other.onChange(() => heard.other++);
    a.changed('token revoked');
    expect(heard.a).toBe(1);
    await eventually(() => heard.b === 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(heard).toEqual({ a: 1, b: 1, other: 0 });
  });
});
