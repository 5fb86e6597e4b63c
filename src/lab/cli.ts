/**
 * `uplinkd lab ...`: build, inspect, break and remove a lab from the shell.
 *
 *     uplinkd lab up [--uplinks N] [--prefix P] [--dhcp UPLINK...] [--p2p UPLINK...] [--cgnat UPLINK...] [--pppoe UPLINK...]
 *                    [--weights 3,2,1] [--tiers 1,1,2] [--pd] [--ha]
 *     uplinkd lab down [--prefix P]
 *     uplinkd lab status [--prefix P] [--json]
 *     uplinkd lab fault UPLINK carrier|blackhole|blackhole4|blackhole6|loss=PCT|rate=RATE|
 *                              delay=MS[,jitter=MS]|dhcp-change|ra-change|renumber|pppoe-drop... [--prefix P]
 *     uplinkd lab heal UPLINK [--prefix P]
 *     uplinkd lab session UPLINK down|up [--same-address] [--prefix P]
 *     uplinkd lab exec NODE [--prefix P] -- CMD...
 *
 * Errors are thrown as LabError for the program's error handler; `exec`
 * exits with the command's exit code.
 */
import type { Command } from "commander";
import { parseDuration } from "../config/duration.js";
import { LabError } from "./errors.js";
import { describeFaults, parseFault } from "./faults.js";
import { labDown, labExists, labUp, openLab, type IspCounters, type LabStatus } from "./lab.js";
import { DEFAULT_PREFIX, MAX_UPLINKS } from "./topology.js";

function intList(what: string, text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const values = text.split(",").map((s) => s.trim());
  if (values.some((v) => !/^\d+$/.test(v))) {
    throw new LabError(`--${what} takes whole numbers separated by commas (3,2,1), not ${text}`);
  }
  return values.map(Number);
}

/** `--dhcp isp2 --dhcp 3,4` -> `["isp2", "3", "4"]`. */
function uplinkList(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((d) => d.split(",")).filter((d) => d !== "");
}

function counterText(c: IspCounters | undefined): [string, string, string] {
  if (c === undefined) return ["-", "-", "-"];
  const f = (x: { packets: number; bytes: number }): string => `${x.packets}p/${x.bytes}B`;
  return [f(c.up), f(c.down), String(c.spoofed.packets)];
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Human form of `lab status`. */
export function formatLabStatus(s: LabStatus): string {
  const missing = s.namespaces.filter((n) => !n.present).map((n) => n.name);
  const lines = [
    `lab ${s.prefix}: ${s.uplinks.length} uplinks, up since ${s.createdAt} (built in ${s.upMs} ms)`,
    `  state:  ${s.stateDir}`,
    `  config: ${s.configPath}`,
    `  namespaces: ${s.namespaces.map((n) => n.name).join(" ")}` +
      (missing.length > 0 ? ` (MISSING: ${missing.join(" ")})` : ""),
    `  processes: ${s.processes.map((p) => `${p.name}[${p.pid}${p.alive ? "" : " DEAD"}]`).join(" ")}`,
    "",
  ];
  const rows = [
    [
      "uplink",
      "iface",
      "router address",
      "gateway",
      "IPv6 address",
      "IPv6 gateway",
      "delegated",
      "carrier",
      "faults",
      "up",
      "down",
      "spoofed",
    ],
  ];
  for (const u of s.uplinks) {
    rows.push([
      u.name,
      u.interface,
      (u.addresses.join(",") || "-") +
        (u.dhcp ? " (dhcp)" : u.kind === "ethernet" ? "" : ` (${u.kind})`),
      u.gateway,
      u.addresses6.join(",") || "-",
      u.gateways6.join(",") || "-",
      u.delegatedPrefix ?? "-",
      u.carrier ? "yes" : "NO",
      u.faults.join(",") || "-",
      ...counterText(u.counters),
    ]);
  }
  return `${lines.join("\n")}${table(rows)}\n`;
}

/**
 * `--advert`'s value in ms.
 * @throws {LabError} when it is not a duration.
 */
function advertMs(text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new LabError(`--advert: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Add `lab up|down|status|fault|heal|exec` to the program. */
export function registerLabCommands(program: Command): void {
  const lab = program
    .command("lab")
    .description(
      "a lab in network namespaces: LAN client, router, one ISP per uplink, an internet with test hosts",
    );

  lab
    .command("up")
    .description("build a lab (an existing lab with the same prefix is removed first)")
    .option("--uplinks <n>", `number of uplinks, 1..${MAX_UPLINKS}`, "3")
    .option("--prefix <prefix>", "prefix of every namespace name", DEFAULT_PREFIX)
    .option("--dhcp <uplink...>", "uplinks (isp2 or 2) whose router address comes from DHCP")
    .option(
      "--p2p <uplink...>",
      "point-to-point uplinks: a TUN pair, no gateway (raw-IP LTE, tunnels); needs python3",
    )
    .option(
      "--cgnat <uplink...>",
      "uplinks behind a CGNAT: a 10.I.1.2 address, a second NAT at the ISP, a private upstream host 10.I.0.53",
    )
    .option(
      "--pppoe <uplink...>",
      "PPPoE uplinks: pppoe-server in the ISP, pppd with the kernel-mode plugin on the router (ppp1, gateway auto); needs a kernel with PPP",
    )
    .option("--weights <list>", "weights in the written config, one per uplink: 3,2,1")
    .option("--tiers <list>", "tiers in the written config, one per uplink: 1,1,2")
    .option(
      "--pd",
      "DHCPv6 prefix delegation: kea-dhcp6 in each ISP, dhclient -6 -P on each router uplink",
    )
    .option("--json", "print the lab's status as JSON")
    .option(
      "--ha",
      "two dual-stack routers (rtr, rtr2) sharing the LAN and every ISP segment, with keepalived, conntrackd and uplinkd running in each, radvd on the master",
    )
    .option(
      "--advert <duration>",
      "with --ha: the routers' VRRP advert interval (VRRPv3, 10ms..40.95s, whole centiseconds)",
      "100ms",
    )
    .action(
      async (opts: {
        ha?: boolean;
        advert: string;
        uplinks: string;
        prefix: string;
        dhcp?: string[];
        p2p?: string[];
        cgnat?: string[];
        pppoe?: string[];
        weights?: string;
        tiers?: string;
        pd?: boolean;
        json?: boolean;
      }) => {
        const uplinks = Number(opts.uplinks);
        if (await labExists(opts.prefix)) {
          process.stderr.write(`removing the existing lab ${opts.prefix} first\n`);
        }
        if (opts.ha === true) {
          const { haLabUp, formatHaLab } = await import("./ha.js");
          const pair = await haLabUp({
            prefix: opts.prefix,
            uplinks,
            weights: intList("weights", opts.weights),
            tiers: intList("tiers", opts.tiers),
            dhcp: uplinkList(opts.dhcp),
            p2p: uplinkList(opts.p2p),
            cgnat: uplinkList(opts.cgnat),
            pppoe: uplinkList(opts.pppoe),
            advertMs: advertMs(opts.advert),
          });
          process.stdout.write(
            `${formatLabStatus(await pair.lab.status())}\n${await formatHaLab(pair)}`,
          );
          return;
        }
        const created = await labUp({
          prefix: opts.prefix,
          uplinks,
          dhcp: uplinkList(opts.dhcp),
          p2p: uplinkList(opts.p2p),
          cgnat: uplinkList(opts.cgnat),
          pppoe: uplinkList(opts.pppoe),
          weights: intList("weights", opts.weights),
          tiers: intList("tiers", opts.tiers),
          pd: opts.pd === true,
        });
        const status = await created.status();
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          `${formatLabStatus(status)}\n` +
            `run the daemon:  uplinkd lab exec rtr --prefix ${created.prefix} -- uplinkd run -c ${created.configPath}\n` +
            `remove the lab:  uplinkd lab down --prefix ${created.prefix}\n`,
        );
      },
    );

  lab
    .command("down")
    .description("remove a lab: its processes, namespaces and state directory")
    .option("--prefix <prefix>", "prefix of the lab", DEFAULT_PREFIX)
    .action(async (opts: { prefix: string }) => {
      const report = await labDown(opts.prefix);
      process.stdout.write(
        report.namespaces.length === 0
          ? `no lab with prefix ${report.prefix}\n`
          : `removed lab ${report.prefix}: ${report.namespaces.length} namespaces, ${report.processes} processes\n`,
      );
    });

  lab
    .command("status")
    .description("namespaces, processes, and per uplink: address, carrier, faults, ISP counters")
    .option("--prefix <prefix>", "prefix of the lab", DEFAULT_PREFIX)
    .option("--json", "print JSON")
    .action(async (opts: { prefix: string; json?: boolean }) => {
      const status = await (await openLab(opts.prefix)).status();
      process.stdout.write(
        opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatLabStatus(status),
      );
    });

  lab
    .command("fault")
    .description(
      "break an uplink at its ISP: carrier, blackhole (both families), blackhole4, blackhole6, " +
        "loss=PCT (round trip), rate=RATE (tc units); events: dhcp-change, ra-change (new IPv6 default router), " +
        "renumber (new IPv6 uplink network and delegated prefix), " +
        "pppoe-drop (the ISP ends the PPPoE session; the redial gets a new address and peer)",
    )
    .argument("<uplink>", "uplink name (isp1) or number (1)")
    .argument(
      "<fault...>",
      "carrier | blackhole | blackhole4 | blackhole6 | loss=PCT | rate=RATE | delay=MS[,jitter=MS] | dhcp-change | ra-change | renumber | pppoe-drop",
    )
    .option("--prefix <prefix>", "prefix of the lab", DEFAULT_PREFIX)
    .action(async (uplink: string, faults: string[], opts: { prefix: string }) => {
      const parsed = faults.map(parseFault);
      const opened = await openLab(opts.prefix);
      for (const fault of parsed) await opened.fault(uplink, fault);
      const u = opened.uplink(uplink);
      const now = describeFaults(await opened.faults(u.number));
      const address = await opened.routerAddress(u.number);
      let ipv6 = "";
      if (u.ipv6 !== undefined) {
        const gateways = (await opened.raGateways(u.number)).join(",") || "none";
        const delegated = await opened.delegatedPrefix(u.number);
        ipv6 =
          `; IPv6 address ${(await opened.routerAddress6(u.number)) ?? "none"} via ${gateways}` +
          (delegated === undefined ? "" : `, delegated ${delegated}`);
      }
      process.stdout.write(
        `${u.name}: ${faults.join(" ")} applied; faults now: ${now.join(" ") || "none"}; ` +
          `router address ${address ?? "none"}${ipv6}\n`,
      );
    });

  lab
    .command("heal")
    .description("remove every fault of an uplink")
    .argument("<uplink>", "uplink name (isp1) or number (1)")
    .option("--prefix <prefix>", "prefix of the lab", DEFAULT_PREFIX)
    .action(async (uplink: string, opts: { prefix: string }) => {
      const opened = await openLab(opts.prefix);
      await opened.heal(uplink);
      process.stdout.write(`${opened.uplink(uplink).name}: healed\n`);
    });

  lab
    .command("session")
    .description(
      "drop (down) or bring back (up) the session of a point-to-point or PPPoE uplink: its interface disappears, then reappears with a new address",
    )
    .argument("<uplink>", "uplink name (isp2) or number (2)")
    .argument("<state>", "down | up")
    .option("--same-address", "up: keep the previous session's address")
    .option("--prefix <prefix>", "prefix of the lab", DEFAULT_PREFIX)
    .action(
      async (uplink: string, state: string, opts: { prefix: string; sameAddress?: boolean }) => {
        if (state !== "up" && state !== "down") {
          throw new LabError(`session state must be up or down, not ${JSON.stringify(state)}`);
        }
        const opened = await openLab(opts.prefix);
        const address = await opened.session(uplink, state, {
          sameAddress: opts.sameAddress === true,
        });
        const name = opened.uplink(uplink).name;
        process.stdout.write(
          state === "down"
            ? `${name}: session down\n`
            : `${name}: session up, router address ${address ?? "?"}\n`,
        );
      },
    );

  lab
    .command("exec")
    .description("run a command in a lab node: lan, rtr, net, isp1.. (put -- before the command)")
    .argument("<node>", "lan | rtr | net | ispN")
    .argument("<command...>", "the command and its arguments")
    .option("--prefix <prefix>", "prefix of the lab", DEFAULT_PREFIX)
    .action(async (node: string, command: string[], opts: { prefix: string }) => {
      const opened = await openLab(opts.prefix);
      const child = opened.spawn(node, command, { stdio: "inherit" });
      const code = await new Promise<number>((resolve, reject) => {
        child.on("error", (error) => {
          reject(new LabError(`lab exec ${node}: ${error.message}`, { cause: error }));
        });
        child.on("exit", (exitCode, signal) => {
          resolve(exitCode ?? (signal === null ? 1 : 128));
        });
      });
      process.exitCode = code;
    });
}
