// vsftpd's FTPS settings, shared by the bench and the e2e suites: anonymous
// logins over TLS, TLS forced on the login and on every data connection (a
// cleartext one fails instead of passing unnoticed), data connections that
// must resume the control connection's TLS session (require_ssl_reuse=YES,
// vsftpd's default, stated), and a cipher list OpenSSL 3 still has.

/**
 * @param {{ certFile: string, keyFile: string, implicit?: boolean, debug?: boolean }} tls
 * @returns {string[]} vsftpd.conf lines
 */
export function vsftpdTlsOptions(tls) {
  return [
    'ssl_enable=YES',
    `implicit_ssl=${tls.implicit === true ? 'YES' : 'NO'}`,
    `rsa_cert_file=${tls.certFile}`,
    `rsa_private_key_file=${tls.keyFile}`,
    'allow_anon_ssl=YES',
    'force_anon_logins_ssl=YES',
    'force_anon_data_ssl=YES',
    'require_ssl_reuse=YES',
    'ssl_ciphers=HIGH',
    `debug_ssl=${tls.debug === true ? 'YES' : 'NO'}`,
  ];
}
