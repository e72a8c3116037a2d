/** What the HTTP layer writes: a status, headers and, for GET, a body stream or bytes. */
export interface PullResponse {
  status: number;
  headers: Record<string, string>;
  body?: NodeJS.ReadableStream | Buffer;
}

/** A response whose body, if any, is in memory. */
export interface BufferedPullResponse extends PullResponse {
  body?: Buffer;
}
