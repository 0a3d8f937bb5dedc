#!/usr/bin/env bash
# Installs what test/e2e needs: network tools, real FTP clients and three real
# FTP servers. Idempotent; run as root.
#
# vsftpd, pure-ftpd and proftpd conflict as Debian packages, so only vsftpd is
# installed with apt-get; pure-ftpd and proftpd-core are fetched with
# `apt-get download` and unpacked with `dpkg -x` into <repo>/.e2e-cache/
# (gitignored). Their shared libraries are ordinary, non-conflicting packages
# and are installed with apt-get.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "install-e2e.sh: must run as root" >&2
  exit 1
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$repo/.e2e-cache"
export DEBIAN_FRONTEND=noninteractive

apt_packages=(
  iproute2 procps coreutils
  # the kernel data plane (test/e2e/kernel.e2e.test.ts, modes-kernel.e2e.test.ts)
  nftables conntrack
  vsftpd
  curl lftp python3
  # test certificates for the FTPS suite
  openssl
  # the PROXY protocol peer and the balancer's L4 rule of test/e2e/identity.e2e.test.ts
  haproxy nftables conntrack
  # the balancer hosts' VRRP fail-over: `keepalived -t` in test/integration/deploy.test.ts and the daemons of
  # test/e2e/balancerFailover.e2e.test.ts (its service is not started: .ci/run's policy-rc.d)
  keepalived
  # runtime libraries of the unpacked pure-ftpd and proftpd-core
  libsodium23 libcap2 libcrypt1 libpam0g libssl3
  libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3
  libidn2-0 libacl1 libncursesw6 zlib1g
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# vsftpd enters the anonymous user's home before its anon_root, so the `ftp`
# user that Debian's vsftpd package creates must exist with a home directory.
if ! getent passwd ftp >/dev/null; then
  useradd --system --home-dir /srv/ftp --shell /usr/sbin/nologin ftp
fi
mkdir -p "$(getent passwd ftp | cut -d: -f6)"

unpack() { # unpack <package> <binary path inside the package>
  local pkg=$1 bin=$2 dir="$cache/$1"
  if [[ -x "$dir/$bin" ]]; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null) || {
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq "$pkg")
  }
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg -x "$tmp"/"$pkg"_*.deb "$dir"
  rm -rf "$tmp"
  [[ -x "$dir/$bin" ]] || { echo "install-e2e.sh: $pkg has no $bin" >&2; exit 1; }
}

mkdir -p "$cache"
unpack pure-ftpd usr/sbin/pure-ftpd
unpack proftpd-core usr/sbin/proftpd

for bin in "$cache/pure-ftpd/usr/sbin/pure-ftpd" "$cache/pure-ftpd/usr/bin/pure-pw" "$cache/proftpd-core/usr/sbin/proftpd"; do
  if ldd "$bin" | grep 'not found' >/dev/null; then
    echo "install-e2e.sh: $bin lacks libraries:" >&2
    ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
done
"$cache/proftpd-core/usr/sbin/proftpd" --version
vsftpd -v </dev/null 2>&1 | head -1 || true
echo "install-e2e.sh: ok ($cache)"
