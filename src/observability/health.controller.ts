import { Controller, Get, HttpCode, Inject, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { ReadinessService } from './readiness.service.js';

@ApiTags('observability')
@Controller('-')
export class HealthController {
  constructor(@Inject(ReadinessService) private readonly readiness: ReadinessService) {}

  @Get('health')
  @HttpCode(200)
  @ApiOperation({ summary: 'Liveness: the process is up and serving HTTP' })
  @ApiOkResponse({ schema: { example: { status: 'ok' } } })
  health(): { status: string } {
    return { status: 'ok' };
  }

  @Get('ready')
  @ApiOperation({ summary: 'Readiness: database, queue (Redis when configured) and blob storage answer' })
  @ApiOkResponse({ schema: { example: { status: 'ok', checks: { database: 'ok', queue: 'ok', storage: 'ok' } } } })
  @ApiServiceUnavailableResponse({ description: 'A dependency is down; `checks` names it' })
  async ready(@Res() reply: FastifyReply): Promise<void> {
    const result = await this.readiness.check();
    await reply.status(result.status === 'ok' ? 200 : 503).send(result);
  }
}
