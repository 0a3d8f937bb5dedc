/**
 * FTP reply codes the gateway writes or reads, named with their RFC.
 * Everything else is forwarded untouched and needs no name.
 */
export const COMMAND_OK = 200; // RFC 959 4.2.2
export const COMMAND_SUPERFLUOUS = 202; // RFC 959 4.2.2
export const SYSTEM_STATUS = 211; // RFC 959 4.2.2, FEAT's reply (RFC 2389 3.2)
export const HELP_MESSAGE = 214; // RFC 959 4.2.2
export const SYSTEM_TYPE = 215; // RFC 959 4.2.2
export const SERVICE_READY = 220; // RFC 959 4.2.2
export const CLOSING_CONTROL = 221; // RFC 959 4.2.2
export const LOGGED_IN = 230; // RFC 959 4.2.2
export const AUTH_OK = 234; // RFC 2228 3, security data exchange complete
export const ENTERING_PASSIVE = 227; // RFC 959 4.2.1
export const ENTERING_EXTENDED_PASSIVE = 229; // RFC 2428 3
export const NEED_PASSWORD = 331; // RFC 959 4.2.2
export const SERVICE_NOT_AVAILABLE = 421; // RFC 959 4.2.1
export const CANT_OPEN_DATA = 425; // RFC 959 4.2.1
export const SYNTAX_ERROR = 500; // RFC 959 4.2.1
export const SYNTAX_ERROR_ARGS = 501; // RFC 959 4.2.1
export const NOT_IMPLEMENTED = 502; // RFC 959 4.2.1
export const BAD_SEQUENCE = 503; // RFC 959 4.2.1
export const NOT_IMPLEMENTED_FOR_PARAM = 504; // RFC 959 4.2.1
export const DATA_PROTECTION_REFUSED = 521; // RFC 4217 9: data connection cannot be opened with this PROT setting
export const EXTENDED_PROTOCOL_NOT_SUPPORTED = 522; // RFC 2428 2
export const NOT_LOGGED_IN = 530; // RFC 959 4.2.1
export const AUTH_REFUSED_POLICY = 534; // RFC 2228 (request denied for policy reasons)
export const PROT_LEVEL_NOT_SUPPORTED = 536; // RFC 2228 (requested PROT level not supported by mechanism)
