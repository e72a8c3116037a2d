import { OciError, OciErrorCode } from './oci-error.js';

/**
 * Reads a manifest body, which is small and bounded (OCI recommends 4 MiB), into one buffer.
 * Anything larger is refused with MANIFEST_INVALID before it is all read. Blobs never come here.
 */
export async function readManifestBody(
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): void },
  maxBytes: number,
  declaredLength?: number,
): Promise<Buffer> {
  if (declaredLength !== undefined && declaredLength > maxBytes) {
    body.destroy();
    throw tooLarge(maxBytes);
  }
  let buffer = Buffer.allocUnsafe(Math.min(declaredLength ?? 64 * 1024, maxBytes));
  let length = 0;
  for await (const chunk of body) {
    if (length + chunk.length > maxBytes) {
      body.destroy();
      throw tooLarge(maxBytes);
    }
    if (length + chunk.length > buffer.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(buffer.length * 2, length + chunk.length), maxBytes));
      buffer.copy(grown, 0, 0, length);
      buffer = grown;
    }
    buffer.set(chunk, length);
    length += chunk.length;
  }
  return buffer.subarray(0, length);
}

function tooLarge(maxBytes: number): OciError {
  return new OciError(OciErrorCode.MANIFEST_INVALID, `manifest larger than ${maxBytes} bytes`, { detail: { limit: maxBytes } });
}
