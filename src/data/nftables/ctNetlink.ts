/**
 * Deleting a conntrack flow over ctnetlink (IPCTNL_MSG_CT_DELETE), which
 * `conntrack -D` did with a process per flow: pure, no socket (the netlink
 * element driver sends it and awaits its ACK). The message is the family in
 * the nfgenmsg and the flow's original tuple: CTA_TUPLE_ORIG {CTA_TUPLE_IP
 * {src, dst}, CTA_TUPLE_PROTO {num, sport, dport}}
 * (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
 *
 * Conntrack *events* stay with `conntrack -E` (FlowWatch.ts): a subscriber
 * socket of the `netlink` package aborts the process when the kernel
 * overruns its buffer (the native module cannot build the error of a
 * POLLERR), and a burst of events can always overrun it. Answers to our own
 * requests are bounded by what we send, so they are safe.
 */
import ipaddr from 'ipaddr.js';
import type { Family } from '../../common/address.js';
import type { Tuple } from './flowEvents.js';
import { attr, nest, NLM_F_ACK, NLM_F_REQUEST } from './nfNetlink.js';

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;

const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;

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
