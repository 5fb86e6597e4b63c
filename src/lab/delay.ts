/**
 * Delay and jitter in the lab without netem (this kernel has no
 * `sch_netem`): a user-space delay line in an uplink's ISP namespace.
 *
 * How: a relay process (Python 3, standard library only, like the TUN relay
 * of point-to-point uplinks in p2p.ts) opens a TUN device `dly` in the ISP
 * namespace. A policy rule `iif core lookup DELAY_TABLE` sends every packet
 * the ISP receives from the internet side into a table whose only route is
 * `default dev dly`: the kernel hands it to the relay (a read on the TUN
 * file descriptor), which keeps it for the delay and writes it back (a write
 * is a packet received on `dly`). The kernel then forwards it again, now
 * from `dly`, by the main table to the customer (`cust`). So the whole delay
 * is added on the way from the internet to the router: a round trip through
 * the ISP (a ping, a TCP handshake) takes `delay` ms longer; the upstream
 * direction is untouched. Packets the ISP itself sends (its gateway
 * answering pings) are not delayed.
 *
 * Without jitter every packet is held for exactly `delay` ms (a FIFO), so
 * order is kept. With jitter each packet's hold is drawn uniformly from
 * [delay - jitter, delay + jitter] (at least 0), the way netem's jitter
 * without a distribution table works, so packets may be reordered.
 *
 * The second pass through the ISP is kept out of the ISP's conntrack (a
 * `notrack` rule on packets from `dly`, see {@link renderFaultChain} in
 * faults.ts) and out of the `faults` chain, so loss is applied once and a
 * CGNAT ISP's de-NATted packets are not taken for new connections.
 *
 * Tried on this kernel (6.18, CONFIG_TUN=y, rp_filter off in the ISPs):
 * ping through `delay=80ms` measured 80.4..81 ms; iperf3 through it well over 10 Mbit/s
 * (numbers in docs/lab.md).
 */

/** Name of the TUN device of the delay line inside an ISP namespace. */
export const DELAY_DEVICE = "dly";

/** Routing table (number) in the ISP namespace whose default route is the delay line. */
export const DELAY_TABLE = 100;

/** Priority of the ISP's `iif core lookup DELAY_TABLE` rule (before `main` at 32766). */
export const DELAY_RULE_PRIORITY = 100;

/** Name of the delay line's script in a lab's state directory. */
export const DELAY_LINE_FILE = "delay-line.py";

/** Most packets the delay line holds at once; more are dropped (a full queue). */
export const DELAY_MAX_HELD = 50_000;

/**
 * Python 3 source of the delay line: `python3 delay-line.py DEV DELAY_MS
 * JITTER_MS`; creates TUN device DEV, prints `ready`, then writes every
 * packet read from DEV back into DEV after its hold, until killed.
 */
export const DELAY_LINE_SCRIPT = `# Delay line of the uplinkd lab: holds each IP packet read from a TUN device
# for DELAY_MS (+- uniform JITTER_MS) and writes it back into the same device.
# Usage: python3 delay-line.py DEV DELAY_MS JITTER_MS. Prints "ready" once DEV exists.
import collections, fcntl, heapq, os, random, select, struct, sys, time

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int), linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_HELD = ${DELAY_MAX_HELD}

dev = sys.argv[1]
delay = float(sys.argv[2]) / 1000.0
jitter = float(sys.argv[3]) / 1000.0

fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
print("ready", flush=True)

fifo = collections.deque()  # (release, packet): constant delay keeps order
heap = []  # (release, n, packet): with jitter, packets leave by release time
n = 0
poll = select.poll()
poll.register(fd, select.POLLIN)
while True:
    now = time.monotonic()
    while fifo and fifo[0][0] <= now:
        try:
            os.write(fd, fifo.popleft()[1])
        except OSError:
            pass
    while heap and heap[0][0] <= now:
        try:
            os.write(fd, heapq.heappop(heap)[2])
        except OSError:
            pass
    nxt = fifo[0][0] if fifo else (heap[0][0] if heap else None)
    timeout = None if nxt is None else max(0, int((nxt - now) * 1000 + 0.999))
    if not poll.poll(timeout):
        continue
    now = time.monotonic()
    for _ in range(1024):
        try:
            packet = os.read(fd, 65535)
        except BlockingIOError:
            break
        except OSError:
            break
        if len(fifo) + len(heap) >= MAX_HELD:
            continue
        if jitter > 0:
            hold = max(0.0, delay + random.uniform(-jitter, jitter))
            n += 1
            heapq.heappush(heap, (now + hold, n, packet))
        else:
            fifo.append((now + delay, packet))
`;

/** Arguments of the delay line: `python3 FILE DEV DELAY_MS JITTER_MS`. */
export function delayLineArgv(script: string, delayMs: number, jitterMs: number): string[] {
  return ["python3", script, DELAY_DEVICE, String(delayMs), String(jitterMs)];
}

/**
 * `ip -batch` lines that put the delay line in the path once its device
 * exists: the device up and the delay table's IPv4 default route through it
 * (the IPv6 one is {@link delayRoute6Args}: `ip -batch` takes no family per
 * line). The rules sending what arrives from `coreInterface` into that
 * table are added by {@link delayRuleArgs} separately (deleting an earlier
 * copy first would fail on the first run).
 */
export function renderDelayBatch(): string {
  return [
    `link set ${DELAY_DEVICE} up`,
    `route replace default dev ${DELAY_DEVICE} table ${DELAY_TABLE}`,
  ]
    .map((l) => `${l}\n`)
    .join("");
}

/**
 * `ip` arguments (after `ip -n NS`) of the delay table's IPv6 default route
 * through the delay line. A TUN device without packet information takes
 * both families: the kernel tells them apart by the IP version of each
 * written packet (drivers/net/tun.c).
 */
export function delayRoute6Args(): string[] {
  return ["-6", "route", "replace", "default", "dev", DELAY_DEVICE, "table", String(DELAY_TABLE)];
}

/**
 * `ip rule` arguments (after `ip -n NS -4|-6 rule`) of the delay rule of
 * one family: `add` or `del`.
 */
export function delayRuleArgs(action: "add" | "del", coreInterface: string): string[] {
  return [
    action,
    "iif",
    coreInterface,
    "lookup",
    String(DELAY_TABLE),
    "priority",
    String(DELAY_RULE_PRIORITY),
  ];
}
