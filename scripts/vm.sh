#!/usr/bin/env bash
# Runs a command as root inside a fresh virtual machine booted from Debian's
# stock kernel, and returns its exit status.
#
#   bash scripts/vm.sh [--kernel 6.1|6.12] [--timeout SECONDS] -- COMMAND [ARG...]
#
# 6.1 is Debian 12 (bookworm) and its linux-image-amd64, 6.12 Debian 13
# (trixie) and its. The root file system is built from Debian's packages by
# mmdebstrap on first use (with the lab's tools, that kernel and its modules,
# and this machine's Node.js) and cached under $UPLINKD_VM_CACHE (default
# .cache/vm in the checkout); the machine writes to a memory overlay over it,
# so the cache is never changed by a run. The checkout is shared at the same
# path (9p) and COMMAND runs in the caller's working directory, with the
# caller's UPLINKD_* variables (and UPLINKD_LAB_TIME_SCALE, by which the
# lab lengthens its waits: 10 under TCG, 2 under KVM, unless given). COMMAND's standard output and error are
# passed through (two serial ports); the kernel's console goes to a
# temporary file whose last lines are printed when the machine does not
# boot. No display and no network device: the lab makes its own namespaces
# inside the machine.
#
# Accelerator: UPLINKD_VM_ACCEL=tcg|kvm|auto (default auto: KVM only when a
# short probe boot with it succeeds, remembered in the cache per host
# kernel, else TCG). Under TCG both virtual CPUs run on one host thread
# (UPLINKD_VM_TCG_THREAD=single, the default; `multi`: one thread per
# virtual CPU) with CPU model UPLINKD_VM_CPU (default max): with one
# thread per CPU, Node died of segfaults in its generated code under
# Linux 6.1 (docs/vm.md, Findings), and one thread was not slower here.
#
# Exit status: COMMAND's, or 124 when it ran out of time, 125 when the
# machine did not boot or this script failed before starting COMMAND.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${UPLINKD_VM_CACHE:-$REPO/.cache/vm}
kernel=6.1
timeout_s=${UPLINKD_VM_TIMEOUT:-3600}
mem_mb=${UPLINKD_VM_MEM:-4096}
cpus=${UPLINKD_VM_CPUS:-2}
accel=${UPLINKD_VM_ACCEL:-auto}

usage() {
  echo "usage: bash scripts/vm.sh [--kernel 6.1|6.12] [--timeout SECONDS] -- COMMAND [ARG...]" >&2
  exit 125
}
die() {
  echo "vm.sh: $*" >&2
  exit 125
}

while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=${2:-}; shift 2 || usage ;;
    --timeout) timeout_s=${2:-}; shift 2 || usage ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ $# -gt 0 ] || usage
case "$kernel" in
  6.1) suite=bookworm ;;
  6.12) suite=trixie ;;
  *) die "--kernel must be 6.1 (Debian 12) or 6.12 (Debian 13), not '$kernel'" ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, 9p passthrough)"
for tool in qemu-system-x86_64 mmdebstrap cpio modprobe; do
  command -v "$tool" >/dev/null || die "needs $tool (bash scripts/setup.sh installs it)"
done
node_bin=$(command -v node) || die "needs node"

# What the machine has: the lab's tools, the kernel, a static busybox for
# the initramfs, and what Node.js links against.
packages=(linux-image-amd64 kmod busybox-static iproute2 nftables conntrack iputils-ping dnsmasq-base
  radvd pppoe ppp python3-minimal procps psmisc iperf3 libstdc++6 util-linux wireguard-tools curl)
node_version=$("$node_bin" --version)
key=$(printf '%s\n' "$suite" "${packages[@]}" "$node_version" vm-2 | sha256sum | cut -c1-12)
root=$CACHE/$suite-$key
mkdir -p "$CACHE"

# Builds $root (under a lock, so parallel runs build it once).
build_root() {
  local partial=$root.partial
  # An interrupted build may have left its chroot's mounts behind.
  { findmnt -rn -o TARGET | grep -F "$partial/" || true; } | sort -r | xargs -r umount -l
  rm -rf --one-file-system "$partial"
  echo "vm.sh: building the Debian $suite root in $root (once; a few minutes)" >&2
  # INITRD=No: the kernel package's hook makes no initramfs (the machine boots
  # with its own, below); making one takes minutes.
  INITRD=No mmdebstrap --quiet --variant=apt --format=directory --include="$(IFS=,; echo "${packages[*]}")" \
    "$suite" "$partial" http://deb.debian.org/debian >&2
  install -m 755 "$node_bin" "$partial/usr/local/bin/node"
  local vmlinuz kver
  vmlinuz=$(ls "$partial"/boot/vmlinuz-* | head -1)
  kver=${vmlinuz##*/vmlinuz-}
  # The initramfs: a static busybox and the modules that reach the 9p root.
  local initrd=$partial.initrd
  rm -rf "$initrd" && mkdir -p "$initrd"/{bin,mods,proc,dev,sys,lower,rw,newroot}
  cp "$partial/bin/busybox" "$initrd/bin/busybox"
  local line n=0
  : >"$initrd/mods/order"
  while read -r line; do
    case "$line" in
      insmod\ *)
        local ko=${line#insmod }
        ko=${ko%% *}
        n=$((n + 1))
        case "$ko" in
          *.xz) xz -dc "$ko" >"$initrd/mods/$n.ko" ;;
          *.zst) zstd -qdc "$ko" >"$initrd/mods/$n.ko" ;;
          *) cp "$ko" "$initrd/mods/$n.ko" ;;
        esac
        echo "$n.ko" >>"$initrd/mods/order"
        ;;
    esac
  done < <(for m in virtio_pci 9pnet_virtio 9p overlay; do
    modprobe -d "$partial" -S "$kver" --show-depends "$m"
  done | awk '!seen[$0]++')
  mv "$initrd" "$partial/boot/vm-initrd"
  ln -sf "${vmlinuz##*/}" "$partial/boot/vm-vmlinuz"
  mv "$partial" "$root"
}
exec 9>"$CACHE/.lock"
flock 9
[ -d "$root" ] || build_root
flock -u 9

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/uplinkd-vm.XXXXXX")
qemu_pid=
cleanup() {
  if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; fi
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$run_dir/ctl"

# The initramfs: the cached busybox and modules, and this checkout's init.
cp -a "$root/boot/vm-initrd" "$run_dir/initrd"
ln -s busybox "$run_dir/initrd/bin/sh"
install -m 755 "$REPO/scripts/vm-init.sh" "$run_dir/initrd/init"
(cd "$run_dir/initrd" && find . | cpio --quiet -o -H newc | gzip -1) >"$run_dir/initrd.gz"

# The command, its directory and UPLINKD_* variables, for the machine's init.
{
  echo "export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb"
  # The lab's waits, longer in an emulated machine (a caller's value wins).
  echo "export UPLINKD_LAB_TIME_SCALE=\$(cat /run/vm-ctl/time-scale)"
  while IFS='=' read -r name _; do
    case "$name" in
      UPLINKD_*|CI|NODE_OPTIONS) printf 'export %s=%q\n' "$name" "${!name}" ;;
    esac
  done < <(env)
  printf 'cd %q\n' "$PWD"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$run_dir/ctl/command"
printf '%s\n' "$REPO" >"$run_dir/ctl/repo"

# Runs the machine; $1: accelerator arguments, $2: seconds; the rest goes
# to the kernel's command line.
run_qemu() {
  local accel_args=$1 seconds=$2
  rm -f "$run_dir/ctl/status" "$run_dir/console.log" "$run_dir/out" "$run_dir/err"
  # The command's output reaches the caller through pipes read by cat, so
  # it shares the caller's file offset (qemu writing to /dev/stdout itself
  # would overwrite what the caller wrote to a regular file meanwhile).
  mkfifo "$run_dir/out" "$run_dir/err"
  cat "$run_dir/out" &
  local out_pid=$!
  cat "$run_dir/err" >&2 &
  local err_pid=$!
  # shellcheck disable=SC2086
  timeout -s KILL "$seconds" qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot \
    $accel_args -m "$mem_mb" -machine pc \
    -kernel "$root/boot/vm-vmlinuz" -initrd "$run_dir/initrd.gz" \
    -append "console=ttyS0 panic=-1 loglevel=4 uplinkd.vm=1" \
    -chardev "file,id=con,path=$run_dir/console.log" -serial chardev:con \
    -chardev "file,id=out,path=$run_dir/out" -serial chardev:out \
    -chardev "file,id=err,path=$run_dir/err" -serial chardev:err \
    -fsdev "local,id=root,path=$root,security_model=passthrough,readonly=on" \
    -device virtio-9p-pci,fsdev=root,mount_tag=root \
    -fsdev "local,id=repo,path=$REPO,security_model=passthrough" \
    -device virtio-9p-pci,fsdev=repo,mount_tag=repo \
    -fsdev "local,id=ctl,path=$run_dir/ctl,security_model=passthrough" \
    -device virtio-9p-pci,fsdev=ctl,mount_tag=ctl \
    </dev/null &
  qemu_pid=$!
  local rc=0
  wait "$qemu_pid" || rc=$?
  qemu_pid=
  # Ends a reader whose fifo qemu never opened (opening it read-write does
  # not block, and closing it leaves no writer), then lets both drain.
  local fifo
  for fifo in "$run_dir/out" "$run_dir/err"; do
    exec 7<>"$fifo"
    exec 7>&-
  done
  wait "$out_pid" "$err_pid" 2>/dev/null || true
  return "$rc"
}

tcg="-accel tcg,thread=${UPLINKD_VM_TCG_THREAD:-single} -smp $cpus -cpu ${UPLINKD_VM_CPU:-max}"
kvm="-accel kvm -smp $cpus -cpu kvm64"
case "$accel" in
  tcg) accel_args=$tcg ;;
  kvm) accel_args=$kvm ;;
  auto)
    probe_file=$CACHE/kvm-$(uname -r)
    if [ ! -f "$probe_file" ]; then
      verdict=tcg
      if [ -w /dev/kvm ]; then
        printf 'exit 0\n' >"$run_dir/ctl/command.probe"
        mv "$run_dir/ctl/command" "$run_dir/ctl/command.real"
        mv "$run_dir/ctl/command.probe" "$run_dir/ctl/command"
        if run_qemu "$kvm" 30 >/dev/null 2>&1 && [ "$(cat "$run_dir/ctl/status" 2>/dev/null)" = 0 ]; then
          verdict=kvm
        fi
        mv "$run_dir/ctl/command.real" "$run_dir/ctl/command"
      fi
      echo "$verdict" >"$probe_file"
    fi
    if [ "$(cat "$probe_file")" = kvm ]; then accel_args=$kvm; else accel_args=$tcg; fi
    ;;
  *) die "UPLINKD_VM_ACCEL must be tcg, kvm or auto" ;;
esac

# The last $2 lines of console log $1 without call-trace and register lines.
console_tail() {
  grep -avE '^\[ *[0-9.]+\]  +(\?|<|[A-Za-z0-9_.]+\+0x|R[A-Z0-9]{1,2}:|Code:)' "$1" 2>/dev/null | tail -n "$2" || true
}

if [ -n "${UPLINKD_LAB_TIME_SCALE:-}" ]; then
  echo "$UPLINKD_LAB_TIME_SCALE" >"$run_dir/ctl/time-scale"
elif [ "$accel_args" = "$kvm" ]; then
  echo 2 >"$run_dir/ctl/time-scale"
else
  echo 10 >"$run_dir/ctl/time-scale"
fi
qemu_rc=0
run_qemu "$accel_args" "$timeout_s" || qemu_rc=$?
if [ -f "$run_dir/ctl/status" ]; then
  exit "$(cat "$run_dir/ctl/status")"
fi
if [ -f "$run_dir/ctl/started" ]; then
  echo "vm.sh: the command did not finish within ${timeout_s} s (or the machine stopped: qemu exit $qemu_rc); the console's last lines:" >&2
  console_tail "$run_dir/console.log" 20 >&2
  exit 124
fi
echo "vm.sh: the machine did not boot (qemu exit $qemu_rc); the console's last lines (call traces left out):" >&2
console_tail "$run_dir/console.log" 30 >&2
exit 125
