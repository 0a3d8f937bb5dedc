/** Reading `nft list table` output in tests (the kernel data plane's table of pinholes). */

/** Any pinhole element left in a `list table` output. */
export function hasElements(listing: string): boolean {
  return /elements = \{/.test(listing);
}
