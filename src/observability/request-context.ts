import { AsyncLocalStorage } from 'node:async_hooks';

/** The request id (and later the actor) of the request being served, for log lines deep in services. */
export interface RequestContext {
  requestId: string;
}

export const requestContext = new AsyncLocalStorage<RequestContext>();
