/**
 * The dashboard's files: plain HTML, CSS and JS from `static/` next to this
 * module (copied to `dist/control/static/` by `npm run build`), and uPlot
 * from its npm package (no CDN). They hold no data, so they are served
 * without a token; the page asks the API for everything it shows.
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const staticFile = (name: string) => fileURLToPath(new URL(`./static/${name}`, import.meta.url));

/** URL path -> file and content type. */
const FILES: Record<string, { file: () => string; type: string }> = {
  "/": { file: () => staticFile("index.html"), type: "text/html; charset=utf-8" },
  "/dashboard/app.js": {
    file: () => staticFile("app.js"),
    type: "text/javascript; charset=utf-8",
  },
  "/dashboard/style.css": { file: () => staticFile("style.css"), type: "text/css; charset=utf-8" },
  "/dashboard/vendor/uPlot.iife.min.js": {
    file: () => require.resolve("uplot/dist/uPlot.iife.min.js"),
    type: "text/javascript; charset=utf-8",
  },
  "/dashboard/vendor/uPlot.min.css": {
    file: () => require.resolve("uplot/dist/uPlot.min.css"),
    type: "text/css; charset=utf-8",
  },
};

/** Headers of every dashboard file: no framing, no inline scripts, same-origin requests only. */
export const DASHBOARD_HEADERS: Record<string, string> = {
  "cache-control": "no-cache",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
    "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
};

/** True for paths the dashboard serves (public: no token needed). */
export function isDashboardPath(path: string): boolean {
  return Object.hasOwn(FILES, path);
}

const cache = new Map<string, Buffer>();

/**
 * One dashboard file.
 * @returns its bytes and content type, or undefined for a path that is not one.
 * @throws when the file cannot be read (a broken install).
 */
export async function dashboardFile(
  path: string,
): Promise<{ body: Buffer; type: string } | undefined> {
  const entry = Object.hasOwn(FILES, path) ? FILES[path] : undefined;
  if (entry === undefined) return undefined;
  let body = cache.get(path);
  if (body === undefined) {
    body = await readFile(entry.file());
    cache.set(path, body);
  }
  return { body, type: entry.type };
}
