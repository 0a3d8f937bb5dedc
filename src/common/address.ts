/**
 * Addresses as the gateway compares them: normalised (no `::ffff:` prefix,
 * IPv6 in RFC 5952 form), their family, and CIDR matching. Pure; shared by
 * edge/ (admission), control/ (PORT/EPRT checks) and data/ (peer checks).
 */
import ipaddr from 'ipaddr.js';
import { boundedMemo } from './memo.js';

export type Family = 4 | 6;

/*
 * Each session asks these of the same few addresses again and again (its
 * client's, the gateway's own, its upstream's: 5-8 calls a session), and
 * ipaddr.js parses afresh every time: kept per address string.
 */
const families = boundedMemo((address): Family => (ipaddr.parse(address).kind() === 'ipv4' ? 4 : 6));
const normalised = boundedMemo((address) => (ipaddr.isValid(address) ? ipaddr.process(address).toString() : ''));

/** 4 or 6; throws on a string that is not an address. */
export function familyOf(address: string): Family {
  return families(address);
}

/** `::ffff:a.b.c.d` → `a.b.c.d`; IPv6 in RFC 5952 form; '' if absent. */
export function normalise(address: string | undefined): string {
  return address === undefined ? '' : normalised(address);
}

/** Deny first, then allow (empty allow list: everyone). */
export function isClientAllowed(address: string, allow: readonly string[], deny: readonly string[]): boolean {
  if (allow.length === 0 && deny.length === 0) return true; // no lists (the default): nothing to parse per session
  const addr = ipaddr.process(address);
  const inList = (list: readonly string[]) => list.some((cidr) => matchesCidr(addr, cidr));
  if (inList(deny)) return false;
  return allow.length === 0 || inList(allow);
}

export function matchesCidr(addr: ipaddr.IPv4 | ipaddr.IPv6, cidr: string): boolean {
  const block = cidr.includes('/') ? cidr : `${cidr}/${ipaddr.parse(cidr).kind() === 'ipv4' ? 32 : 128}`;
  let [net, bits] = ipaddr.parseCIDR(block);
  if (net instanceof ipaddr.IPv6 && net.isIPv4MappedAddress() && bits >= 96) {
    net = net.toIPv4Address(); // ::ffff:198.51.100.0/120 is 198.51.100.0/24
    bits -= 96;
  }
  if (net.kind() !== addr.kind()) return false;
  return addr.match([net, bits] as [typeof net, number]);
}
