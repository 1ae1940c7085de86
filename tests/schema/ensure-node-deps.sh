#!/usr/bin/env bash
# Installs the tests' npm packages (pinned by package-lock.json) when missing: the schema
# validator's (ajv, js-yaml), jose, the JOSE peer of the northbound interop test, and smpp, whose
# server side is the SMSC of the SMS gateway's tests (tests/gateway/sms_*).
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -d node_modules/ajv || ! -d node_modules/jose || ! -d node_modules/smpp || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
