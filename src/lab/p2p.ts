/**
 * Point-to-point uplinks in the lab: a pair of TUN devices, one in the
 * router (`wanI`) and one in the ISP (`cust`), joined by a small relay that
 * copies each IP packet read from one to the other. TUN devices are what
 * raw-IP LTE modems and PPP look like to routing: flags POINTOPOINT and
 * NOARP, no link-layer header, no gateway (`ip -d link` shows
 * `link/none ... tun type tun pi off`). This kernel has neither PPP nor
 * ipip/gre tunnels (CONFIG_PPP, CONFIG_NET_IPIP, CONFIG_NET_IPGRE_DEMUX are
 * not set), but CONFIG_TUN=y.
 *
 * The relay runs in the router namespace and creates both devices there
 * (non-persistent: they vanish when it ends, so `lab down` removes them
 * with it); the lab then moves the ISP's end into the ISP namespace (a TUN
 * device keeps its file descriptor across namespaces). Node has no
 * `ioctl`, so the relay is a Python 3 script using only the standard
 * library's `fcntl`, `os`, `select` and `struct` (python3-minimal).
 */

/** Python 3 source of the relay: `python3 RELAY DEV_A DEV_B`; prints `ready` once both devices exist. */
export const TUN_RELAY_SCRIPT = `# TUN relay of the uplinkd lab: copies IP packets between two TUN devices.
# Usage: python3 tun-relay.py DEV_A DEV_B. Creates both devices (IFF_TUN,
# IFF_NO_PI: raw IP packets), prints "ready", then relays until killed.
import fcntl, os, select, struct, sys

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int), linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


a = open_tun(sys.argv[1])
b = open_tun(sys.argv[2])
print("ready", flush=True)
other = {a: b, b: a}
while True:
    readable, _, _ = select.select([a, b], [], [])
    for fd in readable:
        try:
            packet = os.read(fd, 65535)
        except OSError:
            continue
        try:
            os.write(other[fd], packet)
        except OSError:
            # The other end is down (a carrier fault): the packet is lost, as on a wire.
            pass
`;

/** Name of the relay script in a lab's state directory. */
export const TUN_RELAY_FILE = "tun-relay.py";
