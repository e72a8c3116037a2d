import { randomUUID } from 'node:crypto';
import { waitFor } from '../../test/support/eventually.js';
import { RedisConnections } from '../redis/redis-connections.js';
import { LocalInvalidationBus, RedisInvalidationBus } from './invalidation-bus.js';

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
    await waitFor('replica b to hear the change', () => heard.b === 1);

    // Rather than wait a while to see that nothing more comes: a marker published after the change reaches
    // every subscription after it (Redis keeps publish order), so what each replica had heard when its marker
    // arrived is all it hears of the change: no echo to a, no second delivery to b, nothing for another prefix.
    const channels = { a: `${prefix}:cvr-invalidate`, b: `${prefix}:cvr-invalidate`, other: `${prefix}-other:cvr-invalidate` };
    const heardAtMarker: Partial<typeof heard> = {};
    (['a', 'b', 'other'] as const).forEach((name, i) => {
      // prepended: it runs before the bus's own listener, so the marker itself is not yet counted
      connections[i].subscriber()!.prependListener('message', (channel: string, raw: string) => {
        if (channel === channels[name] && raw === 'marker') heardAtMarker[name] ??= heard[name];
      });
    });
    const publisher = connections[0].commands()!;
    await publisher.publish(channels.a, 'marker');
    await publisher.publish(channels.other, 'marker');
    await waitFor('every replica to receive the marker', () => Object.keys(heardAtMarker).length === 3);
    expect(heardAtMarker).toEqual({ a: 1, b: 1, other: 0 });
  });
});
