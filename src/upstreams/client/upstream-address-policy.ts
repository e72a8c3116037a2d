import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';
import { RefusedAddressError } from './upstream-error.js';

type Ip = ipaddr.IPv4 | ipaddr.IPv6;

/** Resolves a host name to all its addresses (dns.lookup with all: true, by default). */
export type UpstreamResolver = (hostname: string, options: LookupOptions) => Promise<LookupAddress[]>;

export interface UpstreamAddressPolicyOptions {
  /** UPSTREAM_ALLOW_PRIVATE: every address is allowed. */
  allowPrivate: boolean;
  /**
   * UPSTREAM_ALLOWLIST entries: `registry.internal` (that host name, any port), `.corp.example` (any
   * subdomain), `registry.internal:5000` or `10.0.0.5:5000` (that host and port), `10.0.0.5`, `fd00::1`
   * (that address), `10.0.0.0/8`, `fd00::/8` (a network).
   */
  allowlist: readonly string[];
  resolver?: UpstreamResolver;
}

const defaultResolver: UpstreamResolver = (hostname, options) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses)));
  });

function parseIp(address: string): Ip | undefined {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (!isIP(bare)) return undefined;
  const ip = ipaddr.parse(bare);
  return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() ? (ip as ipaddr.IPv6).toIPv4Address() : ip;
}

function embeddedIpv4(ip: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const p = ip.parts;
  switch (ip.range()) {
    case 'rfc6052': // NAT64 64:ff9b::/96: the last 32 bits
      return new ipaddr.IPv4([p[6] >> 8, p[6] & 0xff, p[7] >> 8, p[7] & 0xff]);
    case '6to4': // 2002:AABB:CCDD::/48
      return new ipaddr.IPv4([p[1] >> 8, p[1] & 0xff, p[2] >> 8, p[2] & 0xff]);
    default:
      return undefined;
  }
}

/**
 * Whether an IP address is publicly routable unicast. Refused: loopback, RFC 1918 private, unique local
 * (fc00::/7), link-local (169.254/16, fe80::/10), unspecified, CGNAT (100.64/10), multicast, broadcast,
 * reserved and documentation ranges, and IPv6 forms that embed one of those (IPv4-mapped, NAT64, 6to4).
 */
export function isPublicAddress(address: string): boolean {
  const ip = parseIp(address);
  if (!ip) return false;
  if (ip.kind() === 'ipv4') return ip.range() === 'unicast';
  const v6 = ip as ipaddr.IPv6;
  if (v6.range() === 'unicast') return true;
  const v4 = embeddedIpv4(v6);
  return v4 !== undefined && v4.range() === 'unicast';
}

function normalizeHost(host: string): string {
  return host
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
}

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80';
}

/**
 * The SSRF guard for upstream traffic: decides which hosts and addresses the upstream client may
 * connect to. Checked when an upstream URL is saved (assertUrlAllowed) and again on every connection
 * (guardedConnector: IP literals before connecting, host names on every DNS answer), so a name that
 * later resolves to a private address (DNS rebinding) is still refused. Token realms and redirect
 * targets go through the same connector.
 */
export class UpstreamAddressPolicy {
  private readonly allowPrivate: boolean;
  private readonly networks: [Ip, number][] = [];
  private readonly hosts = new Set<string>();
  private readonly hostSuffixes: string[] = [];
  private readonly hostPorts = new Set<string>();
  private readonly resolver: UpstreamResolver;

  constructor(options: UpstreamAddressPolicyOptions) {
    this.allowPrivate = options.allowPrivate;
    this.resolver = options.resolver ?? defaultResolver;
    for (const raw of options.allowlist) this.addAllowlistEntry(raw.trim());
  }

  private addAllowlistEntry(entry: string): void {
    if (!entry) return;
    if (entry.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(entry);
      const ip = parseIp(addr.toString()) ?? addr;
      // an IPv4-mapped network (::ffff:10.0.0.0/104) is kept as its IPv4 network
      const prefix = ip.kind() !== addr.kind() ? bits - 96 : bits;
      this.networks.push([ip, prefix]);
      return;
    }
    const ip = parseIp(entry);
    if (ip) {
      this.networks.push([ip, ip.kind() === 'ipv4' ? 32 : 128]);
      return;
    }
    const hostPort = /^(.+):(\d{1,5})$/.exec(entry);
    if (hostPort) {
      this.hostPorts.add(`${normalizeHost(hostPort[1])}:${Number(hostPort[2])}`);
      return;
    }
    const host = normalizeHost(entry);
    if (host.startsWith('.')) this.hostSuffixes.push(host);
    else this.hosts.add(host);
  }

  /** Whether the allowlist names this host (by name, by name and port, or an IP literal with its port). */
  isHostAllowlisted(hostname: string, port?: string | number): boolean {
    const host = normalizeHost(hostname);
    if (this.hosts.has(host)) return true;
    if (this.hostSuffixes.some((suffix) => host.endsWith(suffix))) return true;
    return port !== undefined && port !== '' && this.hostPorts.has(`${host}:${Number(port)}`);
  }

  /** Whether a connection to this address is allowed (public, allowlisted, or private allowed). */
  isAddressAllowed(address: string): boolean {
    if (this.allowPrivate) return true;
    const ip = parseIp(address);
    if (!ip) return false;
    if (this.networks.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net, bits))) return true;
    return isPublicAddress(address);
  }

  /**
   * Refuse a URL whose host is, or resolves to, a non-public address (every address of the name is
   * checked). Throws RefusedAddressError, or the DNS error when the name does not resolve.
   */
  async assertUrlAllowed(url: string | URL): Promise<void> {
    const parsed = typeof url === 'string' ? new URL(url) : url;
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new RefusedAddressError(parsed.href, undefined);
    }
    if (this.allowPrivate) return;
    const host = normalizeHost(parsed.hostname);
    if (this.isHostAllowlisted(host, parsed.port || defaultPort(parsed.protocol))) return;
    if (isIP(host)) {
      if (!this.isAddressAllowed(host)) throw new RefusedAddressError(host, host);
      return;
    }
    const addresses = await this.resolver(host, {});
    this.assertAddresses(host, addresses);
  }

  private assertAddresses(host: string, addresses: readonly LookupAddress[]): void {
    if (addresses.length === 0) throw new RefusedAddressError(host, undefined);
    const refused = addresses.find((a) => !this.isAddressAllowed(a.address));
    if (refused) throw new RefusedAddressError(host, refused.address);
  }

  /**
   * A net/tls `lookup` that resolves every address of the name and fails the connection when any of
   * them is not allowed (a name mixing public and private answers is refused as a whole).
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.resolver(hostname, options).then(
      (addresses) => {
        try {
          if (!this.isHostAllowlisted(hostname)) this.assertAddresses(hostname, addresses);
        } catch (err) {
          callback(err as NodeJS.ErrnoException, '', 0);
          return;
        }
        const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
        if (wanted.length === 0) {
          const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
          callback(err, '', 0);
        } else if (options.all) {
          callback(null, wanted);
        } else {
          callback(null, wanted[0].address, wanted[0].family);
        }
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };

  /**
   * An undici connector that enforces this policy on every new connection: allowlisted hosts connect
   * directly, IP literals are checked before connecting, host names are resolved through `lookup`.
   */
  guardedConnector(options: buildConnector.BuildOptions): buildConnector.connector {
    const direct = buildConnector(options);
    if (this.allowPrivate) return direct;
    const checked = buildConnector({ ...options, lookup: this.lookup } as buildConnector.BuildOptions);
    return (opts, callback) => {
      const host = normalizeHost(opts.hostname);
      if (this.isHostAllowlisted(host, opts.port || defaultPort(opts.protocol))) return direct(opts, callback);
      if (isIP(host)) {
        if (!this.isAddressAllowed(host)) return callback(new RefusedAddressError(host, host), null);
        return direct(opts, callback);
      }
      return checked(opts, callback);
    };
  }
}
