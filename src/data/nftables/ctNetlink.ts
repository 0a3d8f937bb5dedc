/**
 * Conntrack events and deletions as ctnetlink bytes: pure, no socket
 * (NetlinkFlowWatch.ts subscribes and sends). The binary twin of the
 * `conntrack -E` line parser in flowEvents.ts: both give a FlowEvent.
 *
 * An event is one message of NFNL_SUBSYS_CTNETLINK: IPCTNL_MSG_CT_NEW (NEW
 * when it carries NLM_F_CREATE, else UPDATE) or IPCTNL_MSG_CT_DELETE
 * (DESTROY), nfgenmsg family AF_INET/AF_INET6, then CTA_TUPLE_ORIG and
 * CTA_TUPLE_REPLY {CTA_TUPLE_IP {src, dst}, CTA_TUPLE_PROTO {num, sport,
 * dport}}, CTA_PROTOINFO {CTA_PROTOINFO_TCP {state}}, CTA_ID
 * (include/uapi/linux/netfilter/nfnetlink_conntrack.h). Most events of a
 * busy edge are not the gateway's: `origDestination` reads only the
 * original tuple's destination, so they cost a few reads.
 */
import ipaddr from 'ipaddr.js';
import type { Family } from '../../common/address.js';
import { attr, decodeAttrs, findAttr, nest, type NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST } from './nfNetlink.js';
import type { FlowEvent, Tuple } from './flowEvents.js';

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_NEW = 0;
const IPCTNL_MSG_CT_DELETE = 2;
const CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
const CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
/** Multicast groups of NETLINK_NETFILTER (enum nfnetlink_groups). */
export const NFNLGRP_CONNTRACK_NEW = 1;
export const NFNLGRP_CONNTRACK_UPDATE = 2;
export const NFNLGRP_CONNTRACK_DESTROY = 3;

const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;

const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_PROTOINFO = 4;
const CTA_ID = 12;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const CTA_PROTOINFO_TCP = 1;
const CTA_PROTOINFO_TCP_STATE = 1;

/** enum tcp_conntrack, as `conntrack -E` names them. */
const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];

/** The event's attributes after the nfgenmsg, if it is a TCP conntrack event at all. */
function eventAttrs(m: NetlinkMessage): [number, Buffer][] | undefined {
  if ((m.type !== CT_NEW && m.type !== CT_DELETE) || m.payload.length < 4) return undefined;
  return decodeAttrs(m.payload.subarray(4));
}

interface RawTuple {
  readonly src: Buffer;
  readonly dst: Buffer;
  readonly sport: number;
  readonly dport: number;
}

function rawTuple(nested: Buffer | undefined): RawTuple | undefined {
  if (nested === undefined) return undefined;
  const parts = decodeAttrs(nested);
  const ip = findAttr(parts, CTA_TUPLE_IP);
  const proto = findAttr(parts, CTA_TUPLE_PROTO);
  if (ip === undefined || proto === undefined) return undefined;
  const ips = decodeAttrs(ip);
  const src = findAttr(ips, CTA_IP_V4_SRC) ?? findAttr(ips, CTA_IP_V6_SRC);
  const dst = findAttr(ips, CTA_IP_V4_DST) ?? findAttr(ips, CTA_IP_V6_DST);
  const p = decodeAttrs(proto);
  const num = findAttr(p, CTA_PROTO_NUM);
  const sport = findAttr(p, CTA_PROTO_SRC_PORT);
  const dport = findAttr(p, CTA_PROTO_DST_PORT);
  if (src === undefined || dst === undefined || num?.[0] !== IPPROTO_TCP || sport?.length !== 2 || dport?.length !== 2) return undefined;
  if (src.length !== dst.length || (src.length !== 4 && src.length !== 16)) return undefined;
  return { src, dst, sport: sport.readUInt16BE(0), dport: dport.readUInt16BE(0) };
}

/** How an address is keyed for a lookup: its bytes in hex (no text formatting per event). */
export function addressKey(address: string): string {
  return Buffer.from(ipaddr.process(address).toByteArray()).toString('hex');
}

/**
 * The original tuple's destination of a TCP conntrack event as
 * (addressKey, port), the only fields a watcher is found by; undefined for
 * anything else.
 */
export function origDestination(m: NetlinkMessage): { key: string; port: number } | undefined {
  const attrs = eventAttrs(m);
  const orig = rawTuple(attrs === undefined ? undefined : findAttr(attrs, CTA_TUPLE_ORIG));
  return orig === undefined ? undefined : { key: orig.dst.toString('hex'), port: orig.dport };
}

function text(address: Buffer): string {
  return ipaddr.fromByteArray([...address]).toString();
}

function tuple(t: RawTuple): Tuple | undefined {
  const port = (p: number) => p >= 1 && p <= 65535;
  if (!port(t.sport) || !port(t.dport)) return undefined;
  return { src: text(t.src), dst: text(t.dst), sport: t.sport, dport: t.dport };
}

/** The whole event, as flowEvents.ts gives a `conntrack -E` line; undefined for anything but a well-formed TCP event. Total. */
export function decodeFlowEvent(m: NetlinkMessage): FlowEvent | undefined {
  const attrs = eventAttrs(m);
  if (attrs === undefined) return undefined;
  const o = rawTuple(findAttr(attrs, CTA_TUPLE_ORIG));
  const r = rawTuple(findAttr(attrs, CTA_TUPLE_REPLY));
  const orig = o === undefined ? undefined : tuple(o);
  const reply = r === undefined ? undefined : tuple(r);
  if (orig === undefined || reply === undefined) return undefined;
  const tcp = findAttr(decodeAttrs(findAttr(attrs, CTA_PROTOINFO) ?? Buffer.alloc(0)), CTA_PROTOINFO_TCP);
  const stateByte = findAttr(decodeAttrs(tcp ?? Buffer.alloc(0)), CTA_PROTOINFO_TCP_STATE);
  const state = stateByte?.length === 1 ? (TCP_STATES[stateByte[0] as number] ?? '') : '';
  const id = findAttr(attrs, CTA_ID);
  const type = m.type === CT_DELETE ? 'DESTROY' : (m.flags & NLM_F_CREATE) !== 0 ? 'NEW' : 'UPDATE';
  return { type, state, orig, reply, id: id?.length === 4 ? String(id.readUInt32BE(0)) : '' };
}

// ---- deletion -------------------------------------------------------------------

function be16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** IPCTNL_MSG_CT_DELETE of the flow whose original tuple is `t`, with ACK (ENOENT: already gone). */
export function encodeDelete(family: Family, t: Tuple, seq: number): Buffer {
  const [srcType, dstType] = family === 4 ? [CTA_IP_V4_SRC, CTA_IP_V4_DST] : [CTA_IP_V6_SRC, CTA_IP_V6_DST];
  const bytes = (a: string) => Buffer.from(ipaddr.parse(a).toByteArray());
  const body = nest(CTA_TUPLE_ORIG, [
    nest(CTA_TUPLE_IP, [attr(srcType, bytes(t.src)), attr(dstType, bytes(t.dst))]),
    nest(CTA_TUPLE_PROTO, [attr(CTA_PROTO_NUM, Buffer.from([IPPROTO_TCP])), attr(CTA_PROTO_SRC_PORT, be16(t.sport)), attr(CTA_PROTO_DST_PORT, be16(t.dport))]),
  ]);
  const out = Buffer.alloc(20 + body.length);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt16LE(CT_DELETE, 4);
  out.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt8(family === 4 ? AF_INET : AF_INET6, 16);
  body.copy(out, 20);
  return out;
}
