#!/usr/bin/env bash
# Installs nats-server (Debian package) when it is not on PATH. Idempotent.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "nats-server is missing and apt-get is not available: install nats-server 2.9+ by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "nats-server is missing: run 'apt-get install nats-server' as root" >&2
    exit 1
  fi
fi
echo "installing nats-server (Debian package)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
# The package may register a system service; the broker runs its own server.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nats-server 2>/dev/null; then
  $SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
nats-server --version >&2
