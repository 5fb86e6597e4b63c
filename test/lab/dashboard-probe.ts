/**
 * Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium via
 * playwright-core; no browser is downloaded) for observability.test.ts. Run
 * it inside a lab namespace (`ip netns exec P-lan node ... dashboard-probe.ts
 * URL TOKEN SCREENSHOT UPLINKS`), so the browser only sees the lab.
 *
 * Talks JSON lines: prints `{"event":"ready"}` once every uplink card shows
 * `up` and the live stream is connected; then, for each line
 * `{"uplink":"isp2","state":"down"}` on stdin, prints
 * `{"event":"seen","uplink":...,"t":EPOCH_MS}` when the card shows that state;
 * `{"screenshot":true}` saves the page to SCREENSHOT and exits;
 * `{"screenshot":true,"path":FILE}` saves it to FILE and goes on;
 * `{"selector":CSS,"text":TEXT}` prints `{"event":"seen","selector":...}`
 * once an element matching CSS shows TEXT (any text without). Page errors
 * and console errors are printed as `{"event":"page-error",...}`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [url, token, screenshot, uplinkCount] = process.argv.slice(2);
if (url === undefined || token === undefined || screenshot === undefined) {
  process.stderr.write("usage: dashboard-probe.ts URL TOKEN SCREENSHOT UPLINKS\n");
  process.exit(2);
}

function emit(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + "\n");
}

const profile = await mkdtemp(join(tmpdir(), "uplinkd-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  chromiumSandbox: false,
  viewport: { width: 1280, height: 1000 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => {
    emit({ event: "page-error", message: error.message });
  });
  page.on("console", (message) => {
    if (message.type() === "error") {
      emit({ event: "page-error", message: message.text(), url: message.location().url });
    }
  });
  await page.goto(`${url}#token=${encodeURIComponent(token)}`);
  const n = Number(uplinkCount ?? 2);
  // Selectors and locators only: the page's CSP (script-src 'self') forbids eval.
  await page.waitForSelector('#live[data-live="live"]', { timeout: 15_000 });
  const deadline = Date.now() + 15_000;
  while ((await page.locator('.uplink[data-state="up"]').count()) !== n) {
    if (Date.now() > deadline) throw new Error(`not every one of ${n} uplinks shows up`);
    await page.waitForTimeout(50);
  }
  emit({ event: "ready" });
  for await (const line of createInterface({ input: process.stdin })) {
    const command = JSON.parse(line) as {
      uplink?: string;
      state?: string;
      screenshot?: boolean;
      path?: string;
      selector?: string;
      text?: string;
    };
    if (command.screenshot === true && command.path !== undefined) {
      await page.screenshot({ path: command.path, fullPage: true });
      emit({ event: "screenshot", path: command.path });
      continue;
    }
    if (command.selector !== undefined) {
      const target = page.locator(command.selector, {
        ...(command.text === undefined ? {} : { hasText: command.text }),
      });
      await target.first().waitFor({ state: "visible", timeout: 15_000 });
      emit({ event: "seen", selector: command.selector, t: Date.now() });
      continue;
    }
    if (command.screenshot === true) {
      await page.screenshot({ path: screenshot, fullPage: true });
      emit({ event: "screenshot", path: screenshot });
      break;
    }
    const selector = `.uplink[data-uplink="${command.uplink ?? ""}"][data-state="${command.state ?? ""}"]`;
    await page.waitForSelector(selector, { timeout: 10_000 });
    emit({ event: "seen", uplink: command.uplink, state: command.state, t: Date.now() });
  }
} finally {
  await context.close();
  await rm(profile, { recursive: true, force: true });
}
// stdin stays open (the test holds it): end here.
process.exit(0);
