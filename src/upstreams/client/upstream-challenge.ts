/**
 * One challenge of a `WWW-Authenticate` header (RFC 9110 section 11.6.1):
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`.
 * The scheme and parameter names are lower-cased; parameter values keep their case, quotes removed
 * and `\"` escapes resolved.
 */
export interface UpstreamChallenge {
  scheme: string;
  params: Record<string, string>;
  /** The token68 form (`Negotiate abc==`), when the challenge carries one instead of parameters. */
  token68?: string;
}

/** A Bearer challenge with the realm the docker token protocol needs. */
export interface BearerChallenge {
  realm: string;
  service?: string;
  scope?: string;
  /** RFC 6750 error code, e.g. `invalid_token` or `insufficient_scope`. */
  error?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*/;

class Cursor {
  pos = 0;

  constructor(readonly text: string) {}

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  ch(): string {
    return this.text[this.pos];
  }

  skipSpace(): void {
    while (!this.done && (this.ch() === ' ' || this.ch() === '\t')) this.pos++;
  }

  skipSpaceAndCommas(): void {
    while (!this.done && (this.ch() === ' ' || this.ch() === '\t' || this.ch() === ',')) this.pos++;
  }

  token(): string {
    const start = this.pos;
    while (!this.done && TCHAR.test(this.ch())) this.pos++;
    return this.text.slice(start, this.pos);
  }

  /** A quoted-string starting at the opening quote; an unterminated one runs to the end. */
  quoted(): string {
    this.pos++;
    let out = '';
    while (!this.done) {
      const c = this.ch();
      if (c === '\\' && this.pos + 1 < this.text.length) {
        out += this.text[this.pos + 1];
        this.pos += 2;
      } else if (c === '"') {
        this.pos++;
        return out;
      } else {
        out += c;
        this.pos++;
      }
    }
    return out;
  }

  /** Whether an `name =` auth-param starts here (as opposed to the next challenge's scheme). */
  atParam(): boolean {
    const save = this.pos;
    const name = this.token();
    this.skipSpace();
    const result = name.length > 0 && this.ch() === '=';
    this.pos = save;
    return result;
  }

  /** A token68 starting here, followed only by spaces then a comma or the end. */
  token68(): string | undefined {
    const m = TOKEN68.exec(this.text.slice(this.pos));
    if (!m) return undefined;
    let after = this.pos + m[0].length;
    while (after < this.text.length && (this.text[after] === ' ' || this.text[after] === '\t')) after++;
    if (after < this.text.length && this.text[after] !== ',') return undefined;
    this.pos = after;
    return m[0];
  }

  /** Skip a malformed stretch up to the next comma outside quotes. */
  skipToComma(): void {
    while (!this.done && this.ch() !== ',') {
      if (this.ch() === '"') this.quoted();
      else this.pos++;
    }
  }
}

function parseOne(text: string, into: UpstreamChallenge[]): void {
  const c = new Cursor(text);
  for (;;) {
    c.skipSpaceAndCommas();
    if (c.done) return;
    const scheme = c.token();
    if (!scheme) {
      c.pos++;
      c.skipToComma();
      continue;
    }
    const challenge: UpstreamChallenge = { scheme: scheme.toLowerCase(), params: {} };
    into.push(challenge);
    const hadSpace = c.ch() === ' ' || c.ch() === '\t';
    c.skipSpace();
    if (c.done || !hadSpace) continue;
    const t68 = c.token68();
    if (t68 !== undefined) {
      challenge.token68 = t68;
      continue;
    }
    // auth-params, comma-separated, until one that is not `name=` (the next challenge) or the end
    for (;;) {
      c.skipSpaceAndCommas();
      if (c.done || !c.atParam()) break;
      const name = c.token().toLowerCase();
      c.skipSpace();
      c.pos++; // '='
      c.skipSpace();
      let value: string;
      if (c.ch() === '"') {
        value = c.quoted();
      } else {
        const start = c.pos;
        while (!c.done && c.ch() !== ',' && c.ch() !== ' ' && c.ch() !== '\t') c.pos++;
        value = c.text.slice(start, c.pos);
      }
      if (!(name in challenge.params)) challenge.params[name] = value;
      c.skipSpace();
      if (!c.done && c.ch() !== ',') c.skipToComma();
    }
  }
}

/**
 * Parse one or more `WWW-Authenticate` header values into challenges, in order. Tolerant: malformed
 * parts are skipped, never thrown on (the header comes from a remote server).
 */
export function parseWwwAuthenticate(header: string | readonly string[] | undefined | null): UpstreamChallenge[] {
  const values = header == null ? [] : typeof header === 'string' ? [header] : header;
  const out: UpstreamChallenge[] = [];
  for (const value of values) parseOne(value, out);
  return out;
}

/** The first Bearer challenge with a usable http(s) realm, if any. */
export function findBearerChallenge(challenges: readonly UpstreamChallenge[]): BearerChallenge | undefined {
  for (const ch of challenges) {
    if (ch.scheme !== 'bearer') continue;
    const realm = ch.params.realm;
    if (!realm || !/^https?:\/\//i.test(realm)) continue;
    return {
      realm,
      service: ch.params.service || undefined,
      scope: ch.params.scope || undefined,
      error: ch.params.error || undefined,
    };
  }
  return undefined;
}

/** Whether the challenges offer HTTP Basic authentication. */
export function offersBasic(challenges: readonly UpstreamChallenge[]): boolean {
  return challenges.some((ch) => ch.scheme === 'basic');
}
