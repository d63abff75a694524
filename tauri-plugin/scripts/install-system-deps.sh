#!/usr/bin/env bash
# Installs the Debian packages needed to compile and test tauri-plugin-sync-queue
# (tauri 2 links GTK 3 and WebKitGTK 4.1 on Linux, whatever its features).
#
# Idempotent and non-interactive: packages already installed are skipped, and
# nothing is fetched when all of them are present. Needs root (or sudo).
# Usage: bash tauri-plugin/scripts/install-system-deps.sh
set -euo pipefail

# What `cargo test` of this crate needs (its dependency graph links no
# OpenSSL, librsvg, appindicator or libxdo). A full app build with bundling
# also wants libssl-dev librsvg2-dev libayatana-appindicator3-dev libxdo-dev;
# WebDriver tests want webkit2gtk-driver xvfb.
PACKAGES=(
  build-essential
  pkg-config
  libwebkit2gtk-4.1-dev # pulls libgtk-3-dev, libsoup-3.0-dev, libjavascriptcoregtk-4.1-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
