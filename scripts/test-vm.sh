#!/usr/bin/env bash
# The VM suite (test/vm) inside machines booted from Debian's stock kernels
# (scripts/vm.sh): Linux 6.1 (Debian 12) and 6.12 (Debian 13), or those given
# as arguments (`bash scripts/test-vm.sh 6.1`). Prints each kernel's duration.
#
# Each file runs in its own `node --test` process (scripts/vm-suite.sh). A
# file that failed while Node crashed in the emulator (a segfault the
# machine's kernel logged; docs/vm.md, Findings) runs again in a fresh
# machine, at most twice; a file that failed without a crash fails the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
mkdir -p .cache/vm
status=0
for kernel in "${kernels[@]}"; do
  started=$(date +%s)
  list=.cache/vm/crashed-$kernel
  files=(test/vm/*.test.ts)
  rc=0
  for try in 1 2 3; do
    rc=0
    bash scripts/vm.sh --kernel "$kernel" --timeout 1500 -- bash scripts/vm-suite.sh "$list" "${files[@]}" || rc=$?
    [ "$rc" = 3 ] || break
    mapfile -t files <"$list"
    if [ "$try" -lt 3 ]; then
      echo "test/vm on Linux $kernel: Node crashed in the emulator during ${files[*]}; running it again in a fresh machine (try $((try + 1)) of 3)"
    fi
  done
  rm -f "$list"
  echo "test/vm on Linux $kernel: exit $rc after $(($(date +%s) - started)) s"
  [ "$rc" = 0 ] || status=$rc
done
exit "$status"
