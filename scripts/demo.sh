#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs the demo: a lab with three
# uplinks, the daemon, real traffic, a fault, a failover and a recovery.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node bin/uplinkd.js demo "$@"
