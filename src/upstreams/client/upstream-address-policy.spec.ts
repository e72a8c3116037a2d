import type { LookupAddress } from 'node:dns';
import { isPublicAddress, UpstreamAddressPolicy } from './upstream-address-policy.js';
import { NOT_PUBLIC, RefusedAddressError } from './upstream-error.js';

const closed = { allowPrivate: false, allowlist: [] as string[] };

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.8.9.10',
    '::1', // loopback
    '10.0.0.1',
    '172.16.5.4',
    '172.31.255.255',
    '192.168.1.1', // RFC 1918
    'fc00::1',
    'fd12:3456::1', // unique local
    '169.254.169.254',
    'fe80::1',
    'fe80::1%eth0', // link-local (cloud metadata)
    '0.0.0.0',
    '::', // unspecified
    '100.64.0.1',
    '100.127.255.254', // CGNAT
    '224.0.0.1',
    'ff02::1',
    '255.255.255.255', // multicast, broadcast
    '::ffff:127.0.0.1',
    '::ffff:10.1.2.3', // IPv4-mapped
    '64:ff9b::7f00:1',
    '2002:7f00:1::', // NAT64 / 6to4 embedding 127.0.0.1
    '192.0.2.1',
    '2001:db8::1', // documentation
    'not-an-ip',
    '',
  ])('%s is not public', (ip) => {
    expect(isPublicAddress(ip)).toBe(false);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])('%s is public', (ip) => {
    expect(isPublicAddress(ip)).toBe(true);
  });
});

describe('UpstreamAddressPolicy', () => {
  it('refuses non-public addresses by default and allows them with allowPrivate', () => {
    const policy = new UpstreamAddressPolicy(closed);
    const open = new UpstreamAddressPolicy({ allowPrivate: true, allowlist: [] });
    for (const ip of ['127.0.0.1', '10.1.1.1', '169.254.169.254', 'fe80::1', '::1', 'fd00::5']) {
      expect(policy.isAddressAllowed(ip)).toBe(false);
      expect(open.isAddressAllowed(ip)).toBe(true);
    }
    expect(policy.isAddressAllowed('8.8.8.8')).toBe(true);
  });

  it('allows allowlisted addresses and networks', () => {
    const policy = new UpstreamAddressPolicy({ allowPrivate: false, allowlist: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8', '::ffff:172.16.0.0/108'] });
    expect(policy.isAddressAllowed('10.20.30.40')).toBe(true);
    expect(policy.isAddressAllowed('::ffff:10.20.30.40')).toBe(true);
    expect(policy.isAddressAllowed('192.168.1.7')).toBe(true);
    expect(policy.isAddressAllowed('192.168.1.8')).toBe(false);
    expect(policy.isAddressAllowed('fd00::1234')).toBe(true);
    expect(policy.isAddressAllowed('fc00::1')).toBe(false);
    expect(policy.isAddressAllowed('172.16.3.3')).toBe(true);
    expect(policy.isAddressAllowed('127.0.0.1')).toBe(false);
  });

  it('matches allowlisted host names, subdomain suffixes and host:port', () => {
    const policy = new UpstreamAddressPolicy({ allowPrivate: false, allowlist: ['Registry.Internal', '.corp.example', 'mirror.lan:5000', '127.0.0.1:5001'] });
    expect(policy.isHostAllowlisted('registry.internal', '443')).toBe(true);
    expect(policy.isHostAllowlisted('registry.internal.', 80)).toBe(true);
    expect(policy.isHostAllowlisted('a.b.corp.example')).toBe(true);
    expect(policy.isHostAllowlisted('corp.example.evil')).toBe(false);
    expect(policy.isHostAllowlisted('mirror.lan', '5000')).toBe(true);
    expect(policy.isHostAllowlisted('mirror.lan', '5001')).toBe(false);
    expect(policy.isHostAllowlisted('127.0.0.1', 5001)).toBe(true);
    expect(policy.isHostAllowlisted('127.0.0.1', 5002)).toBe(false);
  });

  describe('assertUrlAllowed', () => {
    it('refuses literal private addresses and localhost (resolves to loopback)', async () => {
      const policy = new UpstreamAddressPolicy(closed);
      for (const url of ['http://127.0.0.1:5000', 'http://[::1]/', 'https://169.254.169.254/latest', 'http://10.0.0.1', 'http://localhost:5000']) {
        await expect(policy.assertUrlAllowed(url)).rejects.toBeInstanceOf(RefusedAddressError);
      }
    });

    it('accepts everything with allowPrivate, and allowlisted hosts, IPs and CIDRs', async () => {
      await expect(new UpstreamAddressPolicy({ allowPrivate: true, allowlist: [] }).assertUrlAllowed('http://localhost:5000')).resolves.toBeUndefined();
      const policy = new UpstreamAddressPolicy({ allowPrivate: false, allowlist: ['localhost', '10.0.0.0/8', '192.168.0.9'] });
      await expect(policy.assertUrlAllowed('http://localhost:5000')).resolves.toBeUndefined();
      await expect(policy.assertUrlAllowed('http://10.9.8.7/v2')).resolves.toBeUndefined();
      await expect(policy.assertUrlAllowed('http://192.168.0.9')).resolves.toBeUndefined();
      await expect(policy.assertUrlAllowed('http://192.168.0.10')).rejects.toBeInstanceOf(RefusedAddressError);
    });

    it('checks every resolved address, and CIDR-allowlisted resolutions pass', async () => {
      const answers: Record<string, LookupAddress[]> = {
        'public.test': [{ address: '93.184.216.34', family: 4 }],
        'mixed.test': [
          { address: '93.184.216.34', family: 4 },
          { address: '10.0.0.8', family: 4 },
        ],
        'lan.test': [{ address: '10.1.2.3', family: 4 }],
      };
      const resolver = async (host: string) => answers[host];
      const policy = new UpstreamAddressPolicy({ ...closed, resolver });
      await expect(policy.assertUrlAllowed('https://public.test')).resolves.toBeUndefined();
      // the refused address is kept for the logs, never put in the message
      await expect(policy.assertUrlAllowed('https://mixed.test')).rejects.toMatchObject({ host: 'mixed.test', address: '10.0.0.8', message: NOT_PUBLIC });
      await expect(policy.assertUrlAllowed('https://lan.test')).rejects.toBeInstanceOf(RefusedAddressError);
      const withCidr = new UpstreamAddressPolicy({ allowPrivate: false, allowlist: ['10.0.0.0/8'], resolver });
      await expect(withCidr.assertUrlAllowed('https://lan.test')).resolves.toBeUndefined();
    });

    it('refuses non-http schemes', async () => {
      await expect(new UpstreamAddressPolicy({ allowPrivate: true, allowlist: [] }).assertUrlAllowed('file:///etc/passwd')).rejects.toBeInstanceOf(
        RefusedAddressError,
      );
    });
  });

  it('lookup refuses a name that rebinds to a private address after passing the URL check', async () => {
    let calls = 0;
    const resolver = async (): Promise<LookupAddress[]> => (calls++ === 0 ? [{ address: '93.184.216.34', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
    const policy = new UpstreamAddressPolicy({ ...closed, resolver });
    await expect(policy.assertUrlAllowed('https://rebind.test')).resolves.toBeUndefined();
    const err = await new Promise<unknown>((resolve) => policy.lookup('rebind.test', { all: true }, (e) => resolve(e)));
    expect(err).toBeInstanceOf(RefusedAddressError);
    expect(err).toMatchObject({ address: '127.0.0.1', message: NOT_PUBLIC });
  });

  it('lookup answers in both the single and the all:true forms', async () => {
    const resolver = async (): Promise<LookupAddress[]> => [
      { address: '2606:4700::1', family: 6 },
      { address: '93.184.216.34', family: 4 },
    ];
    const policy = new UpstreamAddressPolicy({ ...closed, resolver });
    const all = await new Promise((resolve) => policy.lookup('x.test', { all: true }, (_e, a) => resolve(a)));
    expect(all).toHaveLength(2);
    const single = await new Promise((resolve) => policy.lookup('x.test', { family: 4 }, (_e, a, f) => resolve([a, f])));
    expect(single).toEqual(['93.184.216.34', 4]);
  });
});
