/**
 * Layers of src/, bottom to top. A module may import modules of its own layer
 * and of layers below it, never of a layer above; within the core and the
 * services the folders are ordered as well, so that no two folders import
 * each other. `npm run lint` runs this (`depcruise src`).
 *
 *   base          net/, process/ and the generic root modules (clock, queue,
 *                 backoff, random, optional, errors, files, text, log-level,
 *                 logger): they import
 *                 nothing of uplinkd above them
 *   config        config/ (schema, checks, loading), but config/cli.ts
 *                 (the check command, which tests a config against the
 *                 kernel: wiring)
 *   kernel port   kernel/types.ts: the Kernel interface and kernel facts the
 *                 core is written against (types and constants only)
 *   core          uplink-health.ts, policy/, links/, dataplane/, health/,
 *                 controller/ (in this order)
 *   kernel        kernel/ (the iproute2/nft/conntrack adapter)
 *   services      quota/, speedtest/, ha/, notify/, control/, dns/ (in this order)
 *   wiring        daemon.ts, cli.ts, config/cli.ts
 *
 * The lab (src/lab) may import any of these; nothing outside the lab may
 * import it, except the `lab` and `demo` commands of cli.ts, which load it
 * with a dynamic import() only when they run.
 */

/** Ordered from the bottom: [name, path regex]. */
const LAYERS = [
  [
    "base",
    "^src/(net|process)/|^src/(clock|queue|backoff|random|optional|errors|files|text|log-level|logger)[.]ts$",
  ],
  ["config", "^src/config/(?!cli[.]ts$)"],
  ["kernel-port", "^src/kernel/types[.]ts$"],
  ["core:uplink-health", "^src/uplink-health[.]ts$"],
  ["core:policy", "^src/policy/"],
  ["core:links", "^src/links/"],
  ["core:dataplane", "^src/dataplane/"],
  ["core:health", "^src/health/"],
  ["core:controller", "^src/controller/"],
  ["kernel", "^src/kernel/(?!types[.]ts$)"],
  ["services:quota", "^src/quota/"],
  ["services:speedtest", "^src/speedtest/"],
  ["services:ha", "^src/ha/"],
  ["services:notify", "^src/notify/"],
  ["services:control", "^src/control/"],
  ["services:dns", "^src/dns/"],
  ["wiring", "^src/(daemon|cli)[.]ts$|^src/config/cli[.]ts$"],
];

const layerRules = LAYERS.slice(0, -1).map(([name, path], index) => ({
  name: `layer-${name}`,
  comment: `${name} must not import a layer above it (${LAYERS.slice(index + 1)
    .map(([above]) => above)
    .join(", ")})`,
  severity: "error",
  from: { path },
  to: { path: LAYERS.slice(index + 1).map(([, above]) => above) },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "no-circular",
      comment: "modules must not import each other, directly or through others",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "product-not-lab",
      comment:
        "the product must not import the lab (cli.ts may load it with import() for `lab`/`demo`)",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/lab/|^src/cli[.]ts$" },
      to: { path: "^src/lab/" },
    },
    {
      name: "cli-loads-lab-lazily",
      comment: "cli.ts loads the lab only with a dynamic import()",
      severity: "error",
      from: { path: "^src/cli[.]ts$" },
      to: { path: "^src/lab/", dependencyTypesNot: ["dynamic-import"] },
    },
    {
      name: "known-layer",
      comment: "every module of src/ outside the lab belongs to a layer of .dependency-cruiser.cjs",
      severity: "error",
      from: {
        path: "^src/",
        pathNot: ["^src/lab/", ...LAYERS.map(([, path]) => path)],
      },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^src/control/static/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".js", ".json"],
    },
  },
};
