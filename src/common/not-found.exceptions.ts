import { NotFoundException } from '@nestjs/common';

/**
 * The 404s of the virtual registry admin API, in GitLab's shape (`{"message":"404 Registry Not Found"}`).
 * A resource of a group the caller may not see answers exactly like one that does not exist: each is
 * thrown both for a missing row and for a hidden group (the `notFound` of GroupAccessPolicy.assert).
 */
const notFound = (resource: string) => () => new NotFoundException({ message: `404 ${resource} Not Found` });

export const registryNotFound = notFound('Registry');
export const upstreamNotFound = notFound('Upstream');
export const registryUpstreamNotFound = notFound('Registry Upstream');
export const cacheEntryNotFound = notFound('Cache Entry');
