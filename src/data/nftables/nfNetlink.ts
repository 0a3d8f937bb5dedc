/**
 * nf_tables element operations as netlink bytes, and the kernel's answers
 * back: pure, no socket (NetlinkDriver.ts sends and receives).
 *
 * A transaction of ElementOps becomes one or more datagrams, in op order:
 * a run of `add`/`delete` is one batch (NFNL_MSG_BATCH_BEGIN, a
 * NFT_MSG_NEWSETELEM or DELSETELEM per op, NFNL_MSG_BATCH_END), committed
 * by the kernel all or nothing; a run of `get` is one datagram of
 * NFT_MSG_GETSETELEM requests (reads are not batched). The kernel answers
 * a failed message with an NLMSG_ERROR (-errno) and its sequence number
 * whether or not it asked for an ACK, and aborts the whole batch; so in a
 * batch only the last element message asks for an ACK (an NLMSG_ERROR 0),
 * which comes after any error of the messages before it: one answer per
 * committed batch instead of one per element (a pinhole's open and finish
 * took 15 answers, each a datagram the process receives and decodes). Each
 * `get` asks for its ACK, and is answered by a NEWSETELEM holding the
 * element (its counter) before it. An aborted batch still acks 0 for the
 * messages that asked and were fine: only an error fails it.
 *
 * Layouts (include/uapi/linux/netfilter/nf_tables.h, linux/netlink.h):
 * nlmsghdr {u32 len, u16 type, u16 flags, u32 seq, u32 pid}, then nfgenmsg
 * {u8 family, u8 version, be16 res_id}, then attributes {u16 len, u16 type,
 * payload padded to 4}. A key or data value is its parts concatenated, each
 * part padded to 4 bytes (a port is 2 bytes big-endian, then 2 zero bytes).
 */
import ipaddr from 'ipaddr.js';
import { boundedMemo } from '../../common/memo.js';
import type { Counter, ElementOp, Part } from './ruleset.js';

const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
export const NLMSG_ERROR = 2;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
/** Create if absent; without NLM_F_EXCL an existing element is no error (nft's `add`, not `create`). */
export const NLM_F_CREATE = 0x400;

const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_DELSETELEM = 14;
export const NEWSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
const MSG_TYPE: Record<ElementOp['op'], number> = {
  add: NEWSETELEM,
  get: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
  delete: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM,
};
const NFPROTO_INET = 1;
const AF_UNSPEC = 0;

const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;
// enum nft_set_elem_list_attributes
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
// enum nft_set_elem_attributes
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_SET_ELEM_EXPR = 7;
const NFTA_SET_ELEM_EXPRESSIONS = 11;
const NFTA_DATA_VALUE = 1;
// enum nft_expr_attributes, nft_counter_attributes
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_COUNTER_BYTES = 1;
const NFTA_COUNTER_PACKETS = 2;

// ---- encoding -------------------------------------------------------------------

const align4 = (n: number): number => (n + 3) & ~3;

export function attr(type: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(align4(4 + payload.length));
  out.writeUInt16LE(4 + payload.length, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

export function nest(type: number, children: readonly Buffer[]): Buffer {
  return attr(type | NLA_F_NESTED, Buffer.concat(children));
}

/**
 * Parsed addresses and NUL-terminated names, kept: a pinhole's open and finish
 * encode the same few addresses and set names over and over, and parsing an
 * address (ipaddr.js) cost more than the rest of an encoding (profiled:
 * 114 µs for an open's 5 elements, most of it parsing). Bounded: cleared when
 * full. The cached buffers are only ever copied (Buffer.concat, copy), never
 * written.
 */
const addressBytes = boundedMemo((text) => {
  const address = ipaddr.parse(text);
  return { kind: address.kind(), bytes: Buffer.from(address.toByteArray()) };
});
const stringz = boundedMemo((s) => Buffer.from(`${s}\0`, 'latin1'));

function be64(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

/** One part, padded to 4 bytes (an address's bytes are shared with the cache: copy them, never write them). Throws on a part that does not parse as its type (our own bug: parts come from validated config and state). */
export function encodePart(p: Part): Buffer {
  switch (p.type) {
    case 'ipv4_addr':
    case 'ipv6_addr': {
      const parsed = addressBytes(p.value);
      if (parsed.kind !== (p.type === 'ipv4_addr' ? 'ipv4' : 'ipv6')) throw new Error(`not an ${p.type}: ${p.value}`);
      return parsed.bytes;
    }
    case 'inet_service': {
      if (!Number.isInteger(p.value) || p.value < 0 || p.value > 65535) throw new Error(`not a port: ${p.value}`);
      const out = Buffer.alloc(4);
      out.writeUInt16BE(p.value, 0);
      return out;
    }
  }
}

function value(type: number, parts: readonly Part[]): Buffer {
  return nest(type, [attr(NFTA_DATA_VALUE, Buffer.concat(parts.map(encodePart)))]);
}

/** The NFTA_SET_ELEM_LIST_ELEMENTS of one op (attribute order as nft 1.0.6 sends it: timeout, key, data). */
export function encodeElements(e: ElementOp): Buffer {
  const fields: Buffer[] = [];
  if (e.op === 'add' && e.timeoutMs !== undefined) fields.push(attr(NFTA_SET_ELEM_TIMEOUT, be64(e.timeoutMs)));
  fields.push(value(NFTA_SET_ELEM_KEY, e.key));
  if (e.op === 'add' && e.data !== undefined) fields.push(value(NFTA_SET_ELEM_DATA, e.data));
  return nest(NFTA_SET_ELEM_LIST_ELEMENTS, [nest(NFTA_LIST_ELEM, fields)]);
}

function message(type: number, flags: number, seq: number, family: number, resId: number, body: readonly Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  const out = Buffer.alloc(NLMSG_HDRLEN + NFGENMSG_LEN + payload.length);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt32LE(0, 12); // pid: the kernel fills in ours
  out.writeUInt8(family, 16);
  out.writeUInt8(0, 17); // NFNETLINK_V0
  out.writeUInt16BE(resId, 18);
  payload.copy(out, 20);
  return out;
}

/**
 * One element message: NEWSETELEM (create, no EXCL), DELSETELEM or
 * GETSETELEM, with ACK unless `ack` is false. The same bytes as `message` over `attr`/`nest`/
 * `encodeElements`, written in one pass into one buffer: a pinhole's open
 * and finish encode 12 of these on the PASV and 226 paths, and the
 * allocation of every attribute cost more than the kernel's answer.
 */
export function encodeElementMessage(table: string, e: ElementOp, seq: number, ack = true): Buffer {
  const flags = NLM_F_REQUEST | (ack ? NLM_F_ACK : 0) | (e.op === 'add' ? NLM_F_CREATE : 0);
  const tableName = stringz(table);
  const setName = stringz(e.set);
  const key = e.key.map(encodePart);
  const data = e.op === 'add' && e.data !== undefined ? e.data.map(encodePart) : undefined;
  const timeout = e.op === 'add' && e.timeoutMs !== undefined;
  // A value is nest(type, [attr(NFTA_DATA_VALUE, parts)]): 4 + 4 + the parts (each already 4-aligned).
  const valueLen = (parts: readonly Buffer[]) => 8 + parts.reduce((n, b) => n + b.length, 0);
  const fieldsLen = (timeout ? 12 : 0) + valueLen(key) + (data === undefined ? 0 : valueLen(data));
  const elementsLen = 4 + 4 + fieldsLen; // nest(ELEMENTS, [nest(LIST_ELEM, fields)])
  const total = NLMSG_HDRLEN + NFGENMSG_LEN + align4(4 + tableName.length) + align4(4 + setName.length) + elementsLen;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(total, 0);
  out.writeUInt16LE(MSG_TYPE[e.op], 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt8(NFPROTO_INET, 16); // pid (12) 0: the kernel fills in ours; version (17) NFNETLINK_V0; res_id (18) 0
  let at = NLMSG_HDRLEN + NFGENMSG_LEN;
  const header = (type: number, len: number) => {
    out.writeUInt16LE(len, at);
    out.writeUInt16LE(type, at + 2);
    at += 4;
  };
  const bytes = (b: Buffer) => {
    b.copy(out, at);
    at += align4(b.length);
  };
  const value = (type: number, parts: readonly Buffer[]) => {
    header(type | NLA_F_NESTED, valueLen(parts));
    header(NFTA_DATA_VALUE, valueLen(parts) - 4);
    for (const p of parts) bytes(p);
  };
  header(NFTA_SET_ELEM_LIST_TABLE, 4 + tableName.length);
  bytes(tableName);
  header(NFTA_SET_ELEM_LIST_SET, 4 + setName.length);
  bytes(setName);
  header(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, elementsLen);
  header(NFTA_LIST_ELEM | NLA_F_NESTED, elementsLen - 4);
  if (timeout) {
    header(NFTA_SET_ELEM_TIMEOUT, 12);
    out.writeBigUInt64BE(BigInt(e.timeoutMs as number), at);
    at += 8;
  }
  value(NFTA_SET_ELEM_KEY, key);
  if (data !== undefined) value(NFTA_SET_ELEM_DATA, data);
  return out;
}

/** A datagram to send and the sequence numbers whose answers it asks for. */
export interface Datagram {
  readonly bytes: Buffer;
  /** Every sequence number in it (batch begin/end included: an error may name them). */
  readonly seqs: readonly number[];
  /** The sequence numbers whose ACK (or error) completes it: each `get`'s, or a batch's last element message's. */
  readonly acked: readonly number[];
  /** The `get` messages' sequence numbers, in op order. */
  readonly gets: readonly number[];
}

/**
 * A transaction as datagrams to send in order: each run of writes one batch,
 * each run of reads one datagram of requests. `nextSeq` hands out sequence
 * numbers.
 */
export function encodeTransaction(table: string, ops: readonly ElementOp[], nextSeq: () => number): Datagram[] {
  const runs: ElementOp[][] = [];
  for (const e of ops) {
    const last = runs[runs.length - 1];
    if (last !== undefined && (last[0]?.op === 'get') === (e.op === 'get')) last.push(e);
    else runs.push([e]);
  }
  return runs.map((run) => {
    const reads = run[0]?.op === 'get';
    const messages: Buffer[] = [];
    const seqs: number[] = [];
    const control = (type: number) => {
      const seq = nextSeq();
      seqs.push(seq);
      messages.push(message(type, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, []));
    };
    if (!reads) control(NFNL_MSG_BATCH_BEGIN);
    const elements = run.map((e, i) => {
      const seq = nextSeq();
      seqs.push(seq);
      messages.push(encodeElementMessage(table, e, seq, reads || i === run.length - 1));
      return seq;
    });
    if (!reads) control(NFNL_MSG_BATCH_END);
    return { bytes: Buffer.concat(messages), seqs, acked: reads ? elements : elements.slice(-1), gets: reads ? elements : [] };
  });
}

// ---- decoding -------------------------------------------------------------------

export interface NetlinkMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  /** What follows the nlmsghdr. */
  readonly payload: Buffer;
}

/** The messages of one datagram; a truncated tail is dropped (total: never throws). */
export function decodeMessages(buf: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let at = 0;
  while (at + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(at);
    if (len < NLMSG_HDRLEN || at + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(at + 4), flags: buf.readUInt16LE(at + 6), seq: buf.readUInt32LE(at + 8), payload: buf.subarray(at + NLMSG_HDRLEN, at + len) });
    at += align4(len);
  }
  return out;
}

/** An NLMSG_ERROR's errno: 0 for an ACK, a positive errno for a failure; undefined if malformed. */
export function ackErrno(m: NetlinkMessage): number | undefined {
  if (m.type !== NLMSG_ERROR || m.payload.length < 4) return undefined;
  const error = m.payload.readInt32LE(0);
  return error === 0 ? 0 : -error;
}

/** Attributes as (type without flags, payload); a malformed tail is dropped. */
export function decodeAttrs(buf: Buffer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  let at = 0;
  while (at + 4 <= buf.length) {
    const len = buf.readUInt16LE(at);
    if (len < 4 || at + len > buf.length) break;
    out.push([buf.readUInt16LE(at + 2) & NLA_TYPE_MASK, buf.subarray(at + 4, at + len)]);
    at += align4(len);
  }
  return out;
}

export function findAttr(attrs: readonly [number, Buffer][], type: number): Buffer | undefined {
  return attrs.find(([t]) => t === type)?.[1];
}

function counterOfExpr(expr: Buffer): Counter | undefined {
  const attrs = decodeAttrs(expr);
  const name = findAttr(attrs, NFTA_EXPR_NAME)?.toString('latin1').replace(/\0.*$/s, '');
  const data = findAttr(attrs, NFTA_EXPR_DATA);
  if (name !== 'counter' || data === undefined) return undefined;
  const fields = decodeAttrs(data);
  const bytes = findAttr(fields, NFTA_COUNTER_BYTES);
  const packets = findAttr(fields, NFTA_COUNTER_PACKETS);
  if (bytes?.length !== 8 || packets?.length !== 8) return undefined;
  return { packets: Number(packets.readBigUInt64BE()), bytes: Number(bytes.readBigUInt64BE()) };
}

/** The counter of the (first) element in a NEWSETELEM answer to a `get`; undefined if it holds none. */
export function decodeElementCounter(m: NetlinkMessage): Counter | undefined {
  if (m.type !== NEWSETELEM || m.payload.length < NFGENMSG_LEN) return undefined;
  const elements = findAttr(decodeAttrs(m.payload.subarray(NFGENMSG_LEN)), NFTA_SET_ELEM_LIST_ELEMENTS);
  const elem = elements === undefined ? undefined : findAttr(decodeAttrs(elements), NFTA_LIST_ELEM);
  if (elem === undefined) return undefined;
  const fields = decodeAttrs(elem);
  const single = findAttr(fields, NFTA_SET_ELEM_EXPR);
  if (single !== undefined) return counterOfExpr(single);
  const list = findAttr(fields, NFTA_SET_ELEM_EXPRESSIONS);
  for (const [, expr] of list === undefined ? [] : decodeAttrs(list)) {
    const c = counterOfExpr(expr);
    if (c !== undefined) return c;
  }
  return undefined;
}
