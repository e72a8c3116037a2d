import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { map, Observable } from 'rxjs';

/** GitLab's offset pagination: `page` (from 1) and `per_page` (default 20, at most 100). */
export class PageQueryDto {
  @ApiPropertyOptional({ minimum: 1, default: 1, description: 'Page number' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  page?: number;

  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 20, description: 'Items per page' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  per_page?: number;
}

/** One page of a list, with what the pagination headers need. */
export class Page<T> {
  constructor(
    readonly items: T[],
    readonly total: number,
    readonly page: number,
    readonly perPage: number,
  ) {}

  static request(query: PageQueryDto): { page: number; perPage: number; skip: number } {
    const page = query.page ?? 1;
    const perPage = query.per_page ?? 20;
    return { page, perPage, skip: (page - 1) * perPage };
  }

  map<U>(fn: (item: T) => U): Page<U> {
    return new Page(this.items.map(fn), this.total, this.page, this.perPage);
  }
}

/**
 * Answers a Page with its items as the body and GitLab's headers: X-Total, X-Total-Pages, X-Page,
 * X-Per-Page, X-Next-Page, X-Prev-Page (empty on the last/first page) and Link (prev, next, first, last).
 */
@Injectable()
export class PageHeadersInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    return next.handle().pipe(
      map((result: unknown) => {
        if (!(result instanceof Page)) return result;
        const totalPages = Math.max(1, Math.ceil(result.total / result.perPage));
        const next = result.page < totalPages ? result.page + 1 : undefined;
        const prev = result.page > 1 ? Math.min(result.page - 1, totalPages) : undefined;
        const url = (page: number) => {
          const u = new URL(request.url, `${request.protocol}://${request.host}`);
          u.searchParams.set('page', String(page));
          u.searchParams.set('per_page', String(result.perPage));
          return u.href;
        };
        const links = [
          ...(prev ? [`<${url(prev)}>; rel="prev"`] : []),
          ...(next ? [`<${url(next)}>; rel="next"`] : []),
          `<${url(1)}>; rel="first"`,
          `<${url(totalPages)}>; rel="last"`,
        ];
        void reply.headers({
          'x-total': String(result.total),
          'x-total-pages': String(totalPages),
          'x-page': String(result.page),
          'x-per-page': String(result.perPage),
          'x-next-page': next ? String(next) : '',
          'x-prev-page': prev ? String(prev) : '',
          link: links.join(', '),
        });
        return result.items as unknown;
      }),
    );
  }
}
