#!/usr/bin/env bash
# Runs VM test files inside a machine of scripts/vm.sh, one `node --test`
# process per file, and tells a failed test from a crash of Node in the
# emulator.
#
#   bash scripts/vm-suite.sh CRASHED_LIST FILE...
#
# CRASHED_LIST (a path the caller can read back, in the shared checkout)
# gets one line per file that failed while Node crashed: the machine's
# kernel logged a segfault or trap of a `node` process during the file, or
# Node reported a WebAssembly "memory access out of bounds". Under QEMU's
# TCG with Linux 6.1 such crashes come from the emulation (docs/vm.md,
# Findings); scripts/test-vm.sh runs those files again in a fresh machine.
#
# Exit status: 0 when every file passed; 3 when every failed file is in
# CRASHED_LIST; 1 when a file failed without a crash.
set -uo pipefail
list=$1
shift
: >"$list"
crash_lines() { dmesg | grep -E 'node\[[0-9]+\]: segfault|traps: node\[[0-9]+\]' | wc -l; }
status=0
out=/tmp/vm-suite.out
for file in "$@"; do
  before=$(crash_lines)
  node --import tsx --test --test-concurrency=1 --test-reporter=spec "$file" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] && continue
  if [ "$(crash_lines)" -gt "$before" ] || grep -q 'memory access out of bounds' "$out"; then
    echo "vm-suite: $file failed while Node crashed in the emulator; the kernel's log:"
    dmesg | grep -E 'node\[[0-9]+\]: segfault|traps: node\[[0-9]+\]' | tail -n "$(($(crash_lines) - before))"
    echo "$file" >>"$list"
    [ "$status" = 1 ] || status=3
  else
    dmesg | grep -iE 'killed process|out of memory' | tail -5
    free -m
    status=1
  fi
done
exit "$status"
