import { Module } from '@nestjs/common';
import { UpstreamClient } from './upstream-client.js';

/**
 * The upstream registry HTTP client. Needs the global ConfigModule (upstreamConfig); observers of its
 * request and token-endpoint events register with UpstreamClient.addObserver().
 */
@Module({
  providers: [UpstreamClient],
  exports: [UpstreamClient],
})
export class UpstreamClientModule {}
