#!/usr/bin/env bash
# Installs promtool (Debian package `prometheus`) when it is not on PATH. Idempotent.
# tests/marketprism.rs uses it to run the deployment's alert rules on the broker's /metrics
# (it falls back to evaluating the rule itself without it).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing and apt-get is not available: install Prometheus' promtool by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "promtool is missing: run 'apt-get install prometheus' as root" >&2
    exit 1
  fi
fi
echo "installing promtool (Debian package prometheus)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus >/dev/null
# The package registers a Prometheus server; only promtool is wanted.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
promtool --version >&2
