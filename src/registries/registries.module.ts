import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AccountsModule } from '../accounts/accounts.module.js';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { RegistriesController } from './registries.controller.js';
import { RegistriesService } from './registries.service.js';
import { Registry } from './registry.entity.js';

/** Virtual registries (admin API). Upstreams and cache entries build on it. */
@Module({
  imports: [TypeOrmModule.forFeature([Registry]), AccountsModule, InvalidationModule],
  controllers: [RegistriesController],
  providers: [RegistriesService],
  exports: [RegistriesService],
})
export class RegistriesModule {}
