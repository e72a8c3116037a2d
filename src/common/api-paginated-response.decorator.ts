import { applyDecorators, Type } from '@nestjs/common';
import { ApiOkResponse } from '@nestjs/swagger';

const PAGINATION_HEADERS = {
  'X-Total': { description: 'The total number of items.', schema: { type: 'integer' } },
  'X-Total-Pages': { description: 'The total number of pages.', schema: { type: 'integer' } },
  'X-Page': { description: 'The current page (1-based).', schema: { type: 'integer' } },
  'X-Per-Page': { description: 'The number of items per page.', schema: { type: 'integer' } },
  'X-Next-Page': { description: 'The next page, empty on the last one.', schema: { type: 'string' } },
  'X-Prev-Page': { description: 'The previous page, empty on the first one.', schema: { type: 'string' } },
  Link: { description: 'RFC 8288 links to the first, previous, next and last pages.', schema: { type: 'string' } },
} as const;

/** A 200 with an array of `type` and GitLab's pagination headers (set by PageHeadersInterceptor). */
export function ApiPaginatedResponse(type: Type<unknown>): MethodDecorator & ClassDecorator {
  return applyDecorators(ApiOkResponse({ type: [type], headers: PAGINATION_HEADERS }));
}
