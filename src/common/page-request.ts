/** Which page of a list a service should return (see Page.request in accounts/pagination.ts). */
export interface PageRequest {
  page: number;
  perPage: number;
  skip: number;
}
