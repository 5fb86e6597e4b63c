/**
 * The two files uplinkd writes for the LAN's dnsmasq. Pure functions.
 *
 * - The nftset fragment (`dns.dnsmasq.nftset_file`, read from dnsmasq's
 *   `conf-dir`): one `nftset=/NAME/4#inet#TABLE#dom_N_4,6#inet#TABLE#dom_N_6`
 *   line per DNS name of the `dst_domain` rules. dnsmasq adds the A (4#)
 *   and AAAA (6#) records of every answer for NAME or a name below it to
 *   those sets (dnsmasq(8) `--nftset`, since 2.87). dnsmasq reads these
 *   lines only when it starts.
 * - The servers file (`dns.dnsmasq.servers_file`, dnsmasq's
 *   `servers-file=`): `server=ADDRESS` lines, the `dns` servers of the
 *   healthy uplinks. dnsmasq re-reads it on SIGHUP (dnsmasq(8)
 *   `--servers-file`).
 */
import type { Config } from "../config/schema.js";
import { domainSetName } from "../dataplane/domains.js";
import { usabilityIn, type UplinkView } from "../dataplane/render.js";
import { familyOf } from "../net/ipv6.js";

const HEADER = "# Written by uplinkd from its config; changes here are overwritten.";

/** True when `name` is `domain` or a name below it. */
export function coveredBy(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

/**
 * The nftset lines for `config`'s `dst_domain` rules, one per distinct
 * name, in the order the names first appear.
 *
 * dnsmasq uses only the line of the longest configured name that covers an
 * answer's name, while a rule's name covers its subdomains in every rule.
 * So the line of a name lists the sets of every rule that names it or a
 * name above it, in rule order: `www.example.com` in rule 1 and
 * `example.com` in rule 0 give `www.example.com` both rules' sets, and
 * rule 0, which comes first, decides.
 *
 * @returns lines without newlines, e.g.
 *   `nftset=/example.com/4#inet#uplinkd#dom_0_4,6#inet#uplinkd#dom_0_6`.
 */
export function nftsetLines(config: Config): string[] {
  const table = config.dataplane.table;
  const names: string[] = [];
  for (const rule of config.rules) {
    for (const name of rule.dst_domain ?? []) if (!names.includes(name)) names.push(name);
  }
  return names.map((name) => {
    const specs = config.rules.flatMap((rule, index) =>
      (rule.dst_domain ?? []).some((domain) => coveredBy(name, domain))
        ? ([4, 6] as const).map(
            (family) => `${family}#inet#${table}#${domainSetName(index, family)}`,
          )
        : [],
    );
    return `nftset=/${name}/${specs.join(",")}`;
  });
}

/** The whole nftset fragment file (a header comment, then {@link nftsetLines}). */
export function renderNftsetFile(config: Config): string {
  return [HEADER, ...nftsetLines(config)].join("\n") + "\n";
}

/**
 * The upstream servers dnsmasq should ask now: the `dns` servers of the
 * uplinks that are good (health up, link usable), ordered by tier (1
 * first), then weight (heaviest first), then config order; when none is
 * good, those of the degraded ones; when none is degraded either, every
 * uplink's, so that dnsmasq still has something to ask. Duplicates are
 * left out. IPv6 servers follow the uplinks' IPv6 usability the same way,
 * IPv4 servers their IPv4 usability.
 *
 * @param views the uplinks now, in config order.
 * @returns IPv4 and IPv6 addresses.
 */
export function upstreamServers(config: Config, views: readonly UplinkView[]): string[] {
  const dnsOf = new Map(config.uplinks.map((u) => [u.name, u.dns]));
  const ordered = views
    .map((view, position) => ({ view, position }))
    .sort(
      (a, b) =>
        a.view.tier - b.view.tier || b.view.weight - a.view.weight || a.position - b.position,
    )
    .map((e) => e.view);
  const chosenIn = (family: 4 | 6): Set<string> => {
    const good = ordered.filter((v) => usabilityIn(v, family) === "good");
    const degraded = ordered.filter((v) => usabilityIn(v, family) === "degraded");
    const chosen = good.length > 0 ? good : degraded.length > 0 ? degraded : ordered;
    return new Set(chosen.map((v) => v.name));
  };
  const chosen = { 4: chosenIn(4), 6: chosenIn(6) };
  return [
    ...new Set(
      ordered.flatMap((v) =>
        (dnsOf.get(v.name) ?? []).filter((server) =>
          chosen[familyOf(server) === 6 ? 6 : 4].has(v.name),
        ),
      ),
    ),
  ];
}

/** The whole servers file: a header comment and one `server=ADDRESS` line per upstream server. */
export function renderServersFile(config: Config, views: readonly UplinkView[]): string {
  return (
    [HEADER, ...upstreamServers(config, views).map((server) => `server=${server}`)].join("\n") +
    "\n"
  );
}
