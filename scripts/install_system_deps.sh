#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing, with sudo when not root.
#   scripts/install_system_deps.sh          # runtime: a CJK font for the charts' Chinese labels, g++ for --compile on CPU
#   scripts/install_system_deps.sh --test   # plus a real MediaWiki (PHP + SQLite) for the crawler tests
set -euo pipefail
packages=(fonts-noto-cjk g++)  # g++: torch.compile's inductor builds its CPU kernels with it
if [[ "${1:-}" == "--test" ]]; then
  # php8.2-cgi and micro-httpd satisfy mediawiki's web-server dependency without apache2.
  packages+=(mediawiki php8.2-cgi micro-httpd php-cli php-sqlite3 php-mbstring php-xml php-intl)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages: all present (${packages[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "warning: no apt-get; install these yourself: ${missing[*]}" >&2
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
