#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs every test: type-check,
# lint, unit tests, and the lab tests on the real kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
