#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs every test: type-check,
# lint, unit tests, the lab tests on this machine's kernel, the systemd
# tests, the benchmark's smoke run, and the VM suite (test/vm) on Debian's
# stock kernels 6.1 and 6.12 (scripts/test-vm.sh, docs/vm.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
npm run test:vm
