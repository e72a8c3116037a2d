/**
 * Options of the CreateOrUpdate services. Internal callers (the background worker, jobs) act on behalf
 * of no one and pass `skipPermissionCheck: true`; every other caller is checked through GroupAccessPolicy.
 */
export interface PermissionCheckOptions {
  skipPermissionCheck?: boolean;
}
