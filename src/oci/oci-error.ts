/**
 * OCI Distribution error codes (distribution-spec "Error Codes" table, plus Docker's TAG_INVALID and
 * UNAVAILABLE) and the error every pull-side failure is reported with.
 *
 * The wire form is always `{"errors":[{"code":"...","message":"...","detail":...}]}`: never an empty body.
 */
export enum OciErrorCode {
  BLOB_UNKNOWN = 'BLOB_UNKNOWN',
  BLOB_UPLOAD_INVALID = 'BLOB_UPLOAD_INVALID',
  BLOB_UPLOAD_UNKNOWN = 'BLOB_UPLOAD_UNKNOWN',
  DIGEST_INVALID = 'DIGEST_INVALID',
  MANIFEST_BLOB_UNKNOWN = 'MANIFEST_BLOB_UNKNOWN',
  MANIFEST_INVALID = 'MANIFEST_INVALID',
  MANIFEST_UNKNOWN = 'MANIFEST_UNKNOWN',
  NAME_INVALID = 'NAME_INVALID',
  NAME_UNKNOWN = 'NAME_UNKNOWN',
  SIZE_INVALID = 'SIZE_INVALID',
  TAG_INVALID = 'TAG_INVALID',
  UNAUTHORIZED = 'UNAUTHORIZED',
  DENIED = 'DENIED',
  UNSUPPORTED = 'UNSUPPORTED',
  TOOMANYREQUESTS = 'TOOMANYREQUESTS',
  /** Upstream failure with nothing cached to fall back on (503 by default, 502 for a bad gateway). */
  UNAVAILABLE = 'UNAVAILABLE',
}

/**
 * Default HTTP status per code. UNSUPPORTED is 405 because this registry answers it for push verbs
 * (CNCF Distribution does the same).
 */
export const OCI_ERROR_STATUS: Readonly<Record<OciErrorCode, number>> = {
  [OciErrorCode.BLOB_UNKNOWN]: 404,
  [OciErrorCode.BLOB_UPLOAD_INVALID]: 400,
  [OciErrorCode.BLOB_UPLOAD_UNKNOWN]: 404,
  [OciErrorCode.DIGEST_INVALID]: 400,
  [OciErrorCode.MANIFEST_BLOB_UNKNOWN]: 404,
  [OciErrorCode.MANIFEST_INVALID]: 400,
  [OciErrorCode.MANIFEST_UNKNOWN]: 404,
  [OciErrorCode.NAME_INVALID]: 400,
  [OciErrorCode.NAME_UNKNOWN]: 404,
  [OciErrorCode.SIZE_INVALID]: 400,
  [OciErrorCode.TAG_INVALID]: 400,
  [OciErrorCode.UNAUTHORIZED]: 401,
  [OciErrorCode.DENIED]: 403,
  [OciErrorCode.UNSUPPORTED]: 405,
  [OciErrorCode.TOOMANYREQUESTS]: 429,
  [OciErrorCode.UNAVAILABLE]: 503,
};

/** Default human-readable message per code (the spec's wording where it has one). */
export const OCI_ERROR_MESSAGE: Readonly<Record<OciErrorCode, string>> = {
  [OciErrorCode.BLOB_UNKNOWN]: 'blob unknown to registry',
  [OciErrorCode.BLOB_UPLOAD_INVALID]: 'blob upload invalid',
  [OciErrorCode.BLOB_UPLOAD_UNKNOWN]: 'blob upload unknown to registry',
  [OciErrorCode.DIGEST_INVALID]: 'provided digest did not match uploaded content',
  [OciErrorCode.MANIFEST_BLOB_UNKNOWN]: 'manifest references a manifest or blob unknown to registry',
  [OciErrorCode.MANIFEST_INVALID]: 'manifest invalid',
  [OciErrorCode.MANIFEST_UNKNOWN]: 'manifest unknown to registry',
  [OciErrorCode.NAME_INVALID]: 'invalid repository name',
  [OciErrorCode.NAME_UNKNOWN]: 'repository name not known to registry',
  [OciErrorCode.SIZE_INVALID]: 'provided length did not match content length',
  [OciErrorCode.TAG_INVALID]: 'invalid tag',
  [OciErrorCode.UNAUTHORIZED]: 'authentication required',
  [OciErrorCode.DENIED]: 'requested access to the resource is denied',
  [OciErrorCode.UNSUPPORTED]: 'the operation is unsupported',
  [OciErrorCode.TOOMANYREQUESTS]: 'too many requests',
  [OciErrorCode.UNAVAILABLE]: 'service unavailable',
};

/** One entry of the OCI error body. */
export interface OciErrorEntry {
  code: OciErrorCode;
  message: string;
  detail?: unknown;
}

/** The OCI error body: `{"errors":[...]}`. */
export interface OciErrorBody {
  errors: OciErrorEntry[];
}

export interface OciErrorOptions {
  /** Extra machine-readable context, sent as `detail` (never secrets). */
  detail?: unknown;
  /** HTTP status overriding the code's default (e.g. 502 for UNAVAILABLE). */
  status?: number;
  cause?: unknown;
}

export class OciError extends Error {
  readonly status: number;
  readonly detail: unknown;

  constructor(
    readonly code: OciErrorCode,
    message?: string,
    options: OciErrorOptions = {},
  ) {
    super(message ?? OCI_ERROR_MESSAGE[code], options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OciError';
    this.status = options.status ?? OCI_ERROR_STATUS[code];
    this.detail = options.detail;
  }

  /** True when `err` is an OciError, optionally with the given code. */
  static is(err: unknown, code?: OciErrorCode): err is OciError {
    return err instanceof OciError && (code === undefined || err.code === code);
  }

  /** The response body; `JSON.stringify(err)` yields it too. */
  toJSON(): OciErrorBody {
    const entry: OciErrorEntry = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}
