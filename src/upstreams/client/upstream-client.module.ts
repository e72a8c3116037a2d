import { Module } from '@nestjs/common';
import { UpstreamClient } from './upstream-client.js';

/**
 * The upstream registry HTTP client. Needs the global ConfigModule (upstreamConfig); an optional
 * UPSTREAM_CLIENT_OBSERVER provider (global) receives request and token-endpoint events.
 */
@Module({
  providers: [UpstreamClient],
  exports: [UpstreamClient],
})
export class UpstreamClientModule {}
