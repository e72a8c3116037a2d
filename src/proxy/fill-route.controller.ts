import { Controller, Get, Inject, Param, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { ProxyBlobStore } from './proxy-blob-store.js';

/**
 * The fill route between replicas (FILL_ROUTE_PREFIX): a replica that lost the claim on a blob's fill
 * streams the growing object from the replica holding it. The lease token in the path, random and known
 * only to processes that read the fill lease in Redis, is the authorisation; nothing else is served here.
 */
@ApiExcludeController()
@Controller('-/internal/fills')
export class FillRouteController {
  constructor(@Inject(ProxyBlobStore) private readonly blobs: ProxyBlobStore) {}

  @Get(':token')
  async follow(@Param('token') token: string, @Res() reply: FastifyReply): Promise<void> {
    const response = await this.blobs.peerAnswer(token);
    void reply.status(response.status).headers(response.headers);
    await reply.send(response.body);
  }
}
