import { OCI_ERROR_STATUS, OciError, OciErrorCode } from './oci-error.js';

describe('OciError', () => {
  it('uses the spec status table by default', () => {
    expect(new OciError(OciErrorCode.BLOB_UNKNOWN).status).toBe(404);
    expect(new OciError(OciErrorCode.MANIFEST_UNKNOWN).status).toBe(404);
    expect(new OciError(OciErrorCode.NAME_UNKNOWN).status).toBe(404);
    expect(new OciError(OciErrorCode.NAME_INVALID).status).toBe(400);
    expect(new OciError(OciErrorCode.DIGEST_INVALID).status).toBe(400);
    expect(new OciError(OciErrorCode.TAG_INVALID).status).toBe(400);
    expect(new OciError(OciErrorCode.MANIFEST_INVALID).status).toBe(400);
    expect(new OciError(OciErrorCode.SIZE_INVALID).status).toBe(400);
    expect(new OciError(OciErrorCode.UNAUTHORIZED).status).toBe(401);
    expect(new OciError(OciErrorCode.DENIED).status).toBe(403);
    expect(new OciError(OciErrorCode.UNSUPPORTED).status).toBe(405);
    expect(new OciError(OciErrorCode.TOOMANYREQUESTS).status).toBe(429);
    expect(new OciError(OciErrorCode.UNAVAILABLE).status).toBe(503);
  });

  it('has a status and a default message for every code', () => {
    for (const code of Object.values(OciErrorCode)) {
      const err = new OciError(code);
      expect(OCI_ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
      expect(err.message.length).toBeGreaterThan(0);
      expect(err.code).toBe(code);
    }
  });

  it('lets the status be overridden', () => {
    const err = new OciError(OciErrorCode.UNAVAILABLE, 'upstream answered 500', { status: 502 });
    expect(err.status).toBe(502);
    expect(err.message).toBe('upstream answered 500');
  });

  it('serialises to the OCI error body, with detail only when given', () => {
    expect(JSON.parse(JSON.stringify(new OciError(OciErrorCode.MANIFEST_UNKNOWN)))).toEqual({
      errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown to registry' }],
    });
    expect(new OciError(OciErrorCode.NAME_INVALID, 'bad', { detail: { name: 'A' } }).toJSON()).toEqual({
      errors: [{ code: 'NAME_INVALID', message: 'bad', detail: { name: 'A' } }],
    });
  });

  it('is an Error with a cause and can be recognised by code', () => {
    const cause = new Error('socket hang up');
    const err = new OciError(OciErrorCode.UNAVAILABLE, undefined, { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('OciError');
    expect(err.cause).toBe(cause);
    expect(OciError.is(err)).toBe(true);
    expect(OciError.is(err, OciErrorCode.UNAVAILABLE)).toBe(true);
    expect(OciError.is(err, OciErrorCode.DENIED)).toBe(false);
    expect(OciError.is(cause)).toBe(false);
  });
});
