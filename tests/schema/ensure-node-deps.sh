#!/usr/bin/env bash
# Installs the schema validator's npm packages (pinned by package-lock.json) when missing.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -d node_modules/ajv || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
