import { createCipheriv, randomBytes } from 'node:crypto';
import { encryptionKeyId, parseEncryptionKey, type SealedSecret } from '../../src/upstreams/credential-encryption.service.js';

/**
 * A password sealed the way rows were sealed before ciphertexts were bound to their upstream row:
 * AES-256-GCM with purpose-only associated data, `base64(iv | tag | ciphertext)` without a prefix.
 */
export function sealedBeforeRowBinding(hexKey: string, plaintext: string): SealedSecret {
  const key = parseEncryptionKey(hexKey);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
  cipher.setAAD(Buffer.from('cvr:upstream-credentials:v1'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'), keyId: encryptionKeyId(key) };
}
