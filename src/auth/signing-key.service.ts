import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { calculateJwkThumbprint, exportJWK, JWTPayload, jwtVerify, SignJWT } from 'jose';
import { appConfig, databaseConfig, securityConfig } from '../config/config.js';
import type { AppConfig, DatabaseConfig, SecurityConfig } from '../config/config.js';

/** The issuer of every token this service signs. */
export const TOKEN_ISSUER = 'container-virtual-registry';

/** Where the embedded default keeps its generated signing key (PKCS#8 PEM, mode 0600). */
export function generatedKeyPath(dataDir: string): string {
  return join(dataDir, 'keys', 'jwt-signing.pem');
}

export interface VerificationKey {
  /** RFC 7638 JWK thumbprint of the public key: stable for a key, different for every other key. */
  kid: string;
  alg: string;
  publicKey: KeyObject;
}

interface SigningKey extends VerificationKey {
  privateKey: KeyObject;
}

export class InvalidTokenError extends Error {
  constructor(reason: string) {
    super(`invalid token: ${reason}`);
    this.name = 'InvalidTokenError';
  }
}

/** The JWS algorithm a key can sign with: ES256/384/512 by curve, RS256 for RSA, EdDSA for Ed25519. */
export function algorithmOf(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const alg = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[curve ?? ''];
      if (!alg) throw new Error(`unsupported EC curve ${curve}`);
      return alg;
    }
    case 'rsa':
      if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw new Error('RSA keys must have at least 2048 bits');
      return 'RS256';
    case 'ed25519':
      return 'EdDSA';
    default:
      throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
  }
}

async function verificationKey(publicKey: KeyObject): Promise<VerificationKey> {
  return { kid: await calculateJwkThumbprint(await exportJWK(publicKey)), alg: algorithmOf(publicKey), publicKey };
}

/**
 * The asymmetric key registry tokens are signed with, identified by a `kid` in every token header.
 * Source: JWT_PRIVATE_KEY, or (the embedded default) a P-256 key generated once into
 * `<DATA_DIR>/keys/jwt-signing.pem`. JWT_PREVIOUS_PUBLIC_KEY keeps the key of before a rotation
 * verifying, so tokens minted just before the rotation work until they expire.
 */
@Injectable()
export class SigningKeyService implements OnModuleInit {
  private readonly logger = new Logger(SigningKeyService.name);
  private signing?: SigningKey;
  private readonly verification = new Map<string, VerificationKey>();

  constructor(
    @Inject(securityConfig.KEY) private readonly security: SecurityConfig,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
    @Inject(databaseConfig.KEY) private readonly database: DatabaseConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    const privateKey = createPrivateKey(this.security.jwtPrivateKey ?? (await this.generatedKeyPem()));
    const current = await verificationKey(createPublicKey(privateKey));
    this.signing = { ...current, privateKey };
    this.verification.set(current.kid, current);
    if (this.security.jwtPreviousPublicKey) {
      const previous = await verificationKey(createPublicKey(this.security.jwtPreviousPublicKey));
      this.verification.set(previous.kid, previous);
    }
    this.logger.log(`registry tokens are signed with ${current.alg} key ${current.kid}`);
    if (!this.security.jwtPrivateKey && this.database.url) {
      this.logger.warn(
        `JWT_PRIVATE_KEY is unset, so the signing key lives in ${generatedKeyPath(this.app.dataDir)}: ` +
          "replicas that do not share it reject each other's tokens; set JWT_PRIVATE_KEY when running several",
      );
    }
  }

  get currentKey(): VerificationKey {
    return this.key();
  }

  /** Signs `claims` (plus iss, aud, sub, iat, nbf, exp and a random jti). */
  async sign(claims: JWTPayload, options: { audience: string; subject: string; expiresAt: Date; issuedAt?: Date }): Promise<string> {
    const key = this.key();
    const issuedAt = Math.floor((options.issuedAt ?? new Date()).getTime() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(options.audience)
      .setSubject(options.subject)
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt)
      .setExpirationTime(Math.floor(options.expiresAt.getTime() / 1000))
      .setJti(randomUUID())
      .sign(key.privateKey);
  }

  /** Checks signature (current or previous key, by `kid`), issuer, audience and validity period. */
  async verify(token: string, audience: string): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(
        token,
        (header) => {
          const key = header.kid ? this.verification.get(header.kid) : undefined;
          if (!key || key.alg !== header.alg) throw new InvalidTokenError('unknown signing key');
          return key.publicKey;
        },
        { issuer: TOKEN_ISSUER, audience, algorithms: [...new Set([...this.verification.values()].map((k) => k.alg))], clockTolerance: 5 },
      );
      return payload;
    } catch (err) {
      throw err instanceof InvalidTokenError ? err : new InvalidTokenError((err as Error).message);
    }
  }

  private key(): SigningKey {
    if (!this.signing) throw new Error('the signing key is not loaded yet');
    return this.signing;
  }

  /** Reads the generated key, creating it first if needed (`wx`: with a shared DATA_DIR, the first writer wins). */
  private async generatedKeyPem(): Promise<string> {
    const path = generatedKeyPath(this.app.dataDir);
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await mkdir(join(this.app.dataDir, 'keys'), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    try {
      await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(path, 'utf8');
      throw err;
    }
    this.logger.log(`generated a registry token signing key in ${path}`);
    return pem;
  }
}
