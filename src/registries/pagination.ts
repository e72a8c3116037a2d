import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { map, Observable } from 'rxjs';

export const DEFAULT_PER_PAGE = 20;
export const MAX_PER_PAGE = 100;

/** GitLab's offset pagination parameters (`page`, `per_page`). */
export class PaginationQueryDto {
  @ApiProperty({ required: false, minimum: 1, default: 1, description: 'The page number.', example: 1 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  page?: number;

  @ApiProperty({
    required: false,
    minimum: 1,
    maximum: MAX_PER_PAGE,
    default: DEFAULT_PER_PAGE,
    description: 'The number of items per page.',
    example: DEFAULT_PER_PAGE,
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(MAX_PER_PAGE)
  per_page?: number;
}

export interface PageRequest {
  page: number;
  perPage: number;
}

export function pageRequest(query: PaginationQueryDto | undefined): PageRequest {
  return { page: query?.page ?? 1, perPage: query?.per_page ?? DEFAULT_PER_PAGE };
}

/** One page of a list; PaginationHeadersInterceptor turns it into the body plus GitLab's pagination headers. */
export class Paginated<T> {
  constructor(
    readonly items: T[],
    readonly total: number,
    readonly page: number,
    readonly perPage: number,
  ) {}

  get offset(): number {
    return (this.page - 1) * this.perPage;
  }

  get totalPages(): number {
    return Math.max(1, Math.ceil(this.total / this.perPage));
  }

  map<U>(fn: (item: T) => U): Paginated<U> {
    return new Paginated(this.items.map(fn), this.total, this.page, this.perPage);
  }
}

/**
 * Answers a Paginated result with its items as the body and the headers GitLab clients read:
 * X-Total, X-Total-Pages, X-Page, X-Per-Page, X-Next-Page, X-Prev-Page and an RFC 8288 Link header
 * (first, prev, next, last), whose URLs keep the request's other query parameters.
 */
@Injectable()
export class PaginationHeadersInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    return next.handle().pipe(
      map((result: unknown) => {
        if (!(result instanceof Paginated)) return result;
        const { page, perPage, total, totalPages } = result;
        const nextPage = page < totalPages ? page + 1 : undefined;
        const prevPage = page > 1 ? Math.min(page - 1, totalPages) : undefined;
        void reply.header('x-total', String(total));
        void reply.header('x-total-pages', String(totalPages));
        void reply.header('x-page', String(page));
        void reply.header('x-per-page', String(perPage));
        void reply.header('x-next-page', nextPage ? String(nextPage) : '');
        void reply.header('x-prev-page', prevPage ? String(prevPage) : '');
        const links: string[] = [];
        const link = (p: number, rel: string) => links.push(`<${pageUrl(request, p, perPage)}>; rel="${rel}"`);
        if (prevPage) link(prevPage, 'prev');
        if (nextPage) link(nextPage, 'next');
        link(1, 'first');
        link(totalPages, 'last');
        void reply.header('link', links.join(', '));
        return result.items;
      }),
    );
  }
}

function pageUrl(request: FastifyRequest, page: number, perPage: number): string {
  const url = new URL(request.url, `${request.protocol}://${request.host}`);
  url.searchParams.set('page', String(page));
  url.searchParams.set('per_page', String(perPage));
  return url.href;
}
