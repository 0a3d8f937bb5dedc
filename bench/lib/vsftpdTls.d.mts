/** vsftpd.conf lines for FTPS (see vsftpdTls.mjs). */
export function vsftpdTlsOptions(tls: { certFile: string; keyFile: string; implicit?: boolean; debug?: boolean }): string[];
