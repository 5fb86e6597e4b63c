/**
 * A trigger for "something changed in links, addresses, routes or rules":
 * `ip -o monitor link address route rule`, one line per change. The lines
 * are not parsed (iproute2 6.1 prints text even with -j); the caller
 * re-reads the truth with `ip -j`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

/** Watches the kernel and calls `onChange` at most once per `debounceMs` burst. */
export class KernelMonitor {
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private restarts = 0;

  /**
   * @param onChange called after a burst of changes settles.
   * @param debounceMs quiet time that ends a burst, in ms (default 20).
   */
  constructor(
    private readonly onChange: () => void,
    private readonly debounceMs = 20,
  ) {}

  /** Start watching. Restarts `ip monitor` (at most every second) if it exits. */
  start(): void {
    this.stopped = false;
    const child = spawn("ip", ["-o", "monitor", "link", "address", "route", "rule"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    this.child = child;
    createInterface({ input: child.stdout }).on("line", () => {
      this.trigger();
    });
    child.on("exit", () => {
      if (this.stopped) return;
      this.restarts++;
      setTimeout(
        () => {
          if (!this.stopped) this.start();
        },
        Math.min(1000, 50 * this.restarts),
      ).unref();
      this.trigger();
    });
  }

  private trigger(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onChange();
    }, this.debounceMs);
  }

  /** Stop watching; no callback runs afterwards. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.child?.kill();
    this.child = undefined;
  }
}
