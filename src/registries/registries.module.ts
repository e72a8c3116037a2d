import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Group } from '../accounts/group.entity.js';
import { RegistryUpstream } from '../upstreams/registry-upstream.entity.js';
import { Upstream } from '../upstreams/upstream.entity.js';
import { GroupResolver } from './group-resolver.service.js';
import { RegistriesController } from './registries.controller.js';
import { RegistriesService } from './registries.service.js';
import { Registry } from './registry.entity.js';

/** Virtual registries (admin API). Upstreams and cache entries build on it. */
@Module({
  imports: [TypeOrmModule.forFeature([Registry, RegistryUpstream, Upstream, Group])],
  controllers: [RegistriesController],
  providers: [RegistriesService, GroupResolver],
  exports: [RegistriesService, GroupResolver],
})
export class RegistriesModule {}
