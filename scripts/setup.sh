#!/usr/bin/env bash
# Installs what uplinkd, its lab and its tests need on a Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# systemd-container, mmdebstrap: the systemd test (test/system); lintian: npm run package;
# python3-minimal: the lab's point-to-point relay; radvd: the lab ISPs' IPv6 router advertisements;
# kea-dhcp6-server, isc-dhcp-client: the lab's DHCPv6 prefix delegation (lab up --pd);
# keepalived, conntrackd: the HA pair (lab up --ha).
# openssl: the certificate of the notify unit tests' STARTTLS server.
# qemu-system-x86, cpio, kmod, xz-utils, zstd: the VMs booted from Debian's kernels (scripts/vm.sh, npm run test:vm).
# prometheus: its promtool checks the /metrics output (test/lab/metrics.test.ts); Debian 12 ships promtool
# only in this package, whose server this script keeps stopped and disabled.
packages=(iproute2 nftables iputils-ping conntrack dnsmasq-base busybox iperf3 procps psmisc chromium lsm
  python3-minimal systemd-container mmdebstrap lintian radvd kea-dhcp6-server isc-dhcp-client
  keepalived conntrackd openssl qemu-system-x86 cpio kmod xz-utils zstd prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Only promtool is wanted: the Prometheus server the package enables stays off.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service || true
  fi
fi
if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "uplinkd needs Node.js >= 20.19" >&2
  exit 1
fi
npm ci --no-audit --no-fund
npm run build
