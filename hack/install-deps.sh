#!/usr/bin/env bash
# Installs the user-space tools the kernel tests need (nft, iptables,
# conntrack, ip) with apt-get when they are missing and we are root.
# Without root it only says what is missing; the kernel tests then skip
# (outside CI) or fail (under CI).
set -euo pipefail
missing=()
for tool in nft:nftables iptables:iptables iptables-restore:iptables conntrack:conntrack ip:iproute2; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing $pkgs (not root: not installing; kernel tests will skip)" >&2
  exit 0
fi
command -v apt-get >/dev/null || { echo "install-deps: missing $pkgs and no apt-get here" >&2; exit 1; }
echo "install-deps: apt-get install $pkgs" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
