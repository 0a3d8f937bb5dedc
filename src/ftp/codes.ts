/**
 * FTP reply codes the gateway writes or reads, named with their RFC.
 * Everything else is forwarded untouched and needs no name.
 */
export const DATA_OPEN_STARTING = 150; // RFC 959 4.2.2
export const COMMAND_OK = 200; // RFC 959 4.2.2
export const SERVICE_READY = 220; // RFC 959 4.2.2
export const ENTERING_PASSIVE = 227; // RFC 959 4.2.1
export const ENTERING_EXTENDED_PASSIVE = 229; // RFC 2428 3
export const SERVICE_NOT_AVAILABLE = 421; // RFC 959 4.2.1
export const CANT_OPEN_DATA = 425; // RFC 959 4.2.1
export const SYNTAX_ERROR = 500; // RFC 959 4.2.1
export const SYNTAX_ERROR_ARGS = 501; // RFC 959 4.2.1
export const NOT_IMPLEMENTED = 502; // RFC 959 4.2.1
export const BAD_SEQUENCE = 503; // RFC 959 4.2.1
export const NOT_IMPLEMENTED_FOR_PARAM = 504; // RFC 959 4.2.1
export const EXTENDED_PROTOCOL_NOT_SUPPORTED = 522; // RFC 2428 2
export const AUTH_REFUSED_POLICY = 534; // RFC 2228 (request denied for policy reasons)
