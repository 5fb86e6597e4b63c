#!/bin/sh
# lsm event script of the uplinkd benchmark: the routing change a Shorewall
# style multi-ISP router makes when lsm reports a connection up or down.
#
# lsm runs it (inside the lab's router namespace: lsm is started there with
# `ip netns exec`) as: SCRIPT STATE NAME CHECKIP DEVICE ... (see lsm's
# default_script). The benchmark copies it into the lab's state directory
# next to `uplinks` (one "NAME DEVICE GATEWAY WEIGHT ADDRESS" line per
# uplink).
#
# It records the state of NAME, then replaces the main table's default route
# with a multipath route over every uplink not reported down (all of them
# when every one is down). On down it also deletes the conntrack entries
# masqueraded to the uplink's address, as uplinkd does for its uplinks:
# otherwise a new connection that reuses the ports of a failed attempt
# (still in conntrack as SYN_SENT for 120 s) keeps the dead uplink's NAT
# and fails. It logs "START END STATE NAME" (epoch seconds) to events.log
# and touches only the namespace it runs in.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
dir=$(dirname "$0")
state=$1
name=$2
[ -n "$state" ] && [ -n "$name" ] || exit 2
start=$(date +%s.%N)
# lsm does not wait for one script before starting the next: one at a time.
if command -v flock > /dev/null; then
  exec 9> "$dir/lock"
  flock 9
fi
mkdir -p "$dir/state"
echo "$state" > "$dir/state/$name"
hops=""
all=""
dead=""
while read -r n dev gw weight addr; do
  [ -n "$n" ] || continue
  [ "$n" = "$name" ] && dead=$addr
  hop="nexthop via $gw dev $dev weight $weight"
  all="$all $hop"
  s=$(cat "$dir/state/$n" 2>/dev/null || echo up)
  case "$s" in
    down | long_down) ;;
    *) hops="$hops $hop" ;;
  esac
done < "$dir/uplinks"
[ -n "$hops" ] || hops="$all"
# shellcheck disable=SC2086 # one word per nexthop argument
ip route replace default $hops
case "$state" in
  down | long_down)
    [ -z "$dead" ] || conntrack -D -f ipv4 --reply-dst "$dead" > /dev/null 2>&1 || true
    ;;
esac
end=$(date +%s.%N)
echo "$start $end $state $name" >> "$dir/events.log"
exit 0
