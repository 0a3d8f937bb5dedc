#!/usr/bin/env python3
"""One FTP operation with Python's ftplib in a chosen data-connection mode.

Usage: ftplib_client.py --host H --port P --user U --password W
                        --mode pasv|epsv|port|eprt --op get|put|list|nlst
                        --remote PATH [--local PATH] [--timeout S]
                        [--tls explicit|implicit --ca-file CA [--tls-max 1.2|1.3]]

ftplib normally ignores the address in a 227 and only speaks EPSV/EPRT over
IPv6; this client always trusts the 227 and sends exactly the command the
mode names, so a wrong rewrite by a gateway shows up as a failure.

With --tls it is FTP_TLS: AUTH TLS (explicit) or TLS from the first byte
(implicit, which ftplib lacks: the control socket is wrapped at connect),
then PBSZ 0 and PROT P, so every data connection is TLS too; the server
certificate is verified against --ca-file by IP address. It prints the TLS
version of the control connection (*tls*).
Exit status 0 on success, 1 on an FTP or network error.
"""
import argparse
import ftplib
import socket
import ssl
import sys


class ModeMixin:
    """Sends exactly the data command of its mode and trusts the 227."""

    trust_server_pasv_ipv4_address = True

    def __init__(self, mode, timeout, **kwargs):
        super().__init__(timeout=timeout, **kwargs)
        self.mode = mode

    def makepasv(self):
        if self.mode == "epsv":
            return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        host, port = ftplib.parse227(self.sendcmd("PASV"))
        return host, port

    def makeport(self):
        host = self.sock.getsockname()[0]
        sock = socket.create_server((host, 0), family=self.af, backlog=1)
        port = sock.getsockname()[1]
        if self.mode == "eprt":
            self.sendeprt(host, port)
        else:
            self.sendport(host, port)
        sock.settimeout(self.timeout)
        return sock

    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        # The other end of the data connection: the gateway, in every mode.
        print("*peer* %s" % conn.getpeername()[0])
        return conn, size


class ModeFTP(ModeMixin, ftplib.FTP):
    pass


class ModeFTPS(ModeMixin, ftplib.FTP_TLS):
    pass


class ImplicitModeFTPS(ModeFTPS):
    """FTP_TLS whose control connection is TLS from the first byte."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def make_client(a):
    if a.tls is None:
        return ModeFTP(a.mode, a.timeout)
    context = ssl.create_default_context(cafile=a.ca_file)
    if a.tls_max == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    cls = ImplicitModeFTPS if a.tls == "implicit" else ModeFTPS
    return cls(a.mode, a.timeout, context=context)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=21)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mode", choices=["pasv", "epsv", "port", "eprt"], required=True)
    p.add_argument("--op", choices=["get", "put", "list", "nlst"], required=True)
    p.add_argument("--remote", required=True)
    p.add_argument("--local")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--tls", choices=["explicit", "implicit"])
    p.add_argument("--ca-file")
    p.add_argument("--tls-max", choices=["1.2", "1.3"], default="1.3")
    a = p.parse_args()

    ftp = make_client(a)
    ftp.set_debuglevel(1)  # commands and replies to stdout, PASS masked
    ftp.set_pasv(a.mode in ("pasv", "epsv"))
    try:
        ftp.connect(a.host, a.port)
        ftp.login(a.user, a.password)  # FTP_TLS: AUTH TLS first, when not implicit
        if a.tls is not None:
            print("*tls* %s" % ftp.sock.version())
            ftp.prot_p()
        if a.op == "get":
            with open(a.local, "wb") as f:
                ftp.retrbinary("RETR " + a.remote, f.write)
        elif a.op == "put":
            with open(a.local, "rb") as f:
                ftp.storbinary("STOR " + a.remote, f)
        elif a.op == "list":
            lines = []
            ftp.retrlines("LIST " + a.remote, lines.append)
            print("\n".join("*data* " + line for line in lines))
        else:
            names = ftp.nlst(a.remote)
            print("\n".join("*data* " + name for name in names))
        ftp.quit()
    except ftplib.all_errors as e:  # OSError covers ssl.SSLError
        print("error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        ftp.close()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
