/**
 * Run inside a machine of scripts/vm.sh by the benchmark's `vm` part: the
 * PPPoE reconnect time. A lab with a static uplink and a PPPoE one (isp2),
 * the daemon with the lab's health profile (under emulation the daemon's
 * default intervals, probes every 500 ms; up after 5 passed rounds); `trials` times: `lab fault isp2 pppoe-drop` (the
 * ISP ends the session; the router's pppd redials one second later and gets
 * a new address), timed from the fault to the daemon's status showing isp2
 * up and active from the new address. Prints one JSON line
 * `{"reconnectMs":[...]}`.
 *
 *     bash scripts/vm.sh -- node --import tsx bench/vm-pppoe.ts 5
 */
import { labs, labDaemons } from "./built.js";

const trials = Number(process.argv[2] ?? "5");
const lab = await labs.labUp({ prefix: "bvmppp", uplinks: 2, pppoe: [2], iperf3Servers: 0 });
const daemon = labDaemons.startLabDaemon(lab);
const reconnectMs: number[] = [];
try {
  await daemon.waitFor(
    (s) => s.uplinks.every((u) => u.state === "up" && u.active),
    60_000,
    "both uplinks up",
  );
  for (let i = 0; i < trials; i++) {
    const started = performance.now();
    await lab.fault("isp2", "pppoe-drop");
    const address = await lab.routerAddress("isp2");
    await daemon.waitFor(
      (s) =>
        s.uplinks.some(
          (u) => u.name === "isp2" && u.state === "up" && u.active && u.address === address,
        ),
      60_000,
      `isp2 up from ${address}`,
      20,
    );
    reconnectMs.push(Math.round(performance.now() - started));
  }
} finally {
  await daemon.stop();
  await lab.down();
}
process.stdout.write(`${JSON.stringify({ reconnectMs })}\n`);
