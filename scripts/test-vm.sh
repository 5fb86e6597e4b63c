#!/usr/bin/env bash
# The VM suite (test/vm) inside machines booted from Debian's stock kernels
# (scripts/vm.sh): Linux 6.1 (Debian 12) and 6.12 (Debian 13), or those given
# as arguments (`bash scripts/test-vm.sh 6.1`). Prints each kernel's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
status=0
for kernel in "${kernels[@]}"; do
  started=$(date +%s)
  rc=0
  # On a failure, the machine's kernel log names processes it killed (out of memory, ...).
  # (One line: scripts/vm.sh quotes the command for the machine's sh.)
  bash scripts/vm.sh --kernel "$kernel" --timeout 1500 -- sh -c \
    'node --import tsx --test --test-concurrency=1 --test-reporter=spec test/vm/*.test.ts || { rc=$?; dmesg | grep -iE "killed process|out of memory|segfault" | tail -5 >&2; free -m >&2; exit $rc; }' || rc=$?
  echo "test/vm on Linux $kernel: exit $rc after $(($(date +%s) - started)) s"
  [ "$rc" = 0 ] || status=$rc
done
exit "$status"
