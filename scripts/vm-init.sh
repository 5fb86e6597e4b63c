#!/bin/sh
# Init of the machines scripts/vm.sh boots (POSIX sh: busybox's in the
# initramfs, dash after the switch).
#
# Stage 1 (/init in the initramfs): loads the modules that reach the 9p
# shares, mounts the cached Debian root read-only under a memory overlay and
# switches to it, running this script again as stage 2.
# Stage 2: mounts the kernel's file systems, the checkout at its own path and
# the control share, runs the command written there with its output on the
# second and third serial ports, writes its exit status to the control share
# and powers the machine off.
P9="trans=virtio,version=9p2000.L,msize=262144"

if [ "$1" != stage2 ]; then
  export PATH=/bin
  busybox mount -t proc proc /proc
  busybox mount -t devtmpfs dev /dev
  for m in $(busybox cat /mods/order); do
    busybox insmod "/mods/$m" || echo "vm-init: insmod $m failed" >/dev/console
  done
  busybox mount -t 9p -o "$P9,ro,cache=loose" root /lower || exec busybox sh -c 'echo "vm-init: no 9p root"; exit 1'
  busybox mount -t tmpfs -o mode=755 rw /rw
  busybox mkdir -p /rw/upper /rw/work
  busybox mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    exec busybox sh -c 'echo "vm-init: no overlay"; exit 1'
  busybox cp /init /newroot/sbin/uplinkd-vm-init
  busybox umount /proc
  busybox mount --move /dev /newroot/dev
  exec busybox switch_root /newroot /sbin/uplinkd-vm-init stage2
fi

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Node's WebAssembly (tsx's module lexer, undici's HTTP parser) catches an
# out-of-bounds access as a fault in guard pages. Under QEMU's TCG with
# Linux 6.1 some in-bounds accesses fault too: 2 or 3 of 10 Node starts
# died with "RuntimeError: memory access out of bounds" in the lexer. With
# explicit bounds checks instead, 0 of 10 did.
export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--disable-wasm-trap-handler"
busybox mount -t proc proc /proc
busybox mount -t sysfs sys /sys
busybox mount -t tmpfs -o mode=755 run /run
busybox mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /dev/pts /dev/shm /run/lock /run/vm-ctl
busybox mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
busybox mount -t tmpfs -o mode=1777 shm /dev/shm
busybox mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || true
# The device nodes whose modules load on first open (/dev/net/tun, /dev/ppp,
# ...), as systemd-tmpfiles makes them from kmod's list on a booted Debian.
kmod static-nodes --format=tmpfiles -o /run/static-nodes.conf 2>/dev/null || true
while read -r type path _mode _u _g _age devnum; do
  case "$type" in
    c*|b*) [ -e "$path" ] || { mkdir -p "${path%/*}" && mknod "$path" "${type%!}" "${devnum%%:*}" "${devnum#*:}"; } ;;
  esac
done </run/static-nodes.conf
busybox mount -t 9p -o "$P9" ctl /run/vm-ctl
repo=$(cat /run/vm-ctl/repo)
mkdir -p "$repo"
busybox mount -t 9p -o "$P9,cache=loose" repo "$repo"
busybox hostname uplinkd-vm
ip link set lo up
for port in /dev/ttyS1 /dev/ttyS2; do stty -F "$port" raw -echo 115200 2>/dev/null || true; done
: >/run/vm-ctl/started
status=0
sh /run/vm-ctl/command </dev/null >/dev/ttyS1 2>/dev/ttyS2 || status=$?
echo "$status" >/run/vm-ctl/status.partial
mv /run/vm-ctl/status.partial /run/vm-ctl/status
sync
echo o >/proc/sysrq-trigger
sleep 10
