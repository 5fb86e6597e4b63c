// uplinkd dashboard: plain JS, no build step. Reads /status, /events and
// /history once, then follows /events/stream (server-sent events, read with
// fetch so that a bearer token can go in a header). A token comes from the
// page's #token=... fragment (never sent to the server) or the login form,
// and is kept in sessionStorage.
"use strict";

(function () {
  const MAX_POINTS = 600;
  const MAX_EVENTS = 200;
  const COLORS = ["#3b82c4", "#e07b39", "#7c5cc4", "#1f9d55", "#c4458a", "#2aa1a8", "#a8862a"];

  const state = {
    token: null,
    uplinks: [],
    xs: [],
    rtt: new Map(),
    loss: new Map(),
    charts: { rtt: null, loss: null },
    chartKey: "",
    events: [],
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function colorOf(name) {
    const i = state.uplinks.findIndex((u) => u.name === name);
    return COLORS[(i < 0 ? 0 : i) % COLORS.length];
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    return (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms";
  }

  function pct(v) {
    return v === null || v === undefined ? "–" : v.toFixed(1) + " %";
  }

  function bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }

  /** Bits per second as tc writes rates: 9.8 Mbit/s. */
  function rate(bps) {
    const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
    let i = 0;
    while (bps >= 1000 && i < units.length - 1) {
      bps /= 1000;
      i++;
    }
    return (i === 0 ? Math.round(bps) : bps.toFixed(1)) + " " + units[i];
  }

  /**
   * A link that is down: its window may still hold answers from before the
   * outage, but no RTT is shown for it (nor charted).
   */
  function dead(health) {
    return health.state === "down";
  }

  /** Local time of day, 24 hours: `14:51:34`. */
  function hms(d) {
    const pad = (n) => String(n).padStart(2, "0");
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function age(iso) {
    const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400)
      return (
        Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m"
      );
    return Math.floor(s / 86400) + "d";
  }

  /** Local time as `2026-11-21 00:43:49`, or `00:43:49` for today. */
  function clock(iso) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    const day = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    const time = hms(d);
    return d.toDateString() === new Date().toDateString() ? time : day + " " + time;
  }

  // ---- API -----------------------------------------------------------------

  function headers() {
    return state.token ? { authorization: "Bearer " + state.token } : {};
  }

  async function getJson(path) {
    const res = await fetch(path, { headers: headers(), cache: "no-store" });
    if (res.status === 401) throw Object.assign(new Error("unauthorized"), { status: 401 });
    if (!res.ok) throw new Error(path + ": " + res.status);
    return res.json();
  }

  function setLive(what, text) {
    const node = document.getElementById("live");
    node.dataset.live = what;
    node.textContent = text;
  }

  // ---- rendering ------------------------------------------------------------

  function renderUplinks(status) {
    state.uplinks = status.uplinks;
    document.getElementById("router").textContent =
      "pid " + status.pid + " · " + status.config + " · v" + status.version;
    const box = document.getElementById("uplinks");
    box.replaceChildren(
      ...status.uplinks.map((u) =>
        el(
          "article",
          {
            class: "uplink",
            dataset: u.ipv6
              ? { uplink: u.name, state: u.state, state6: u.ipv6.state }
              : { uplink: u.name, state: u.state },
          },
          el(
            "h3",
            {},
            el("span", {}, u.name),
            el(
              "span",
              { class: "states" },
              // The card's colour and first badge are the uplink's IPv4 state; IPv6 has its own badge.
              el("span", { class: "state", title: "IPv4" }, u.ipv6 ? "IPv4 " + u.state : u.state),
              u.ipv6
                ? el(
                    "span",
                    {
                      class: "state6",
                      dataset: { state: u.ipv6.state },
                      title: "IPv6: " + u.ipv6.reason,
                    },
                    u.ipv6.state === "unmonitored"
                      ? "IPv6 unmonitored (follows IPv4)"
                      : "IPv6 " + u.ipv6.state,
                  )
                : null,
            ),
          ),
          el(
            "dl",
            {},
            el("dt", {}, "since"),
            el("dd", { title: u.since }, age(u.since) + " (" + clock(u.since) + ")"),
            el("dt", {}, "loss now / window"),
            el(
              "dd",
              {
                class: "loss",
                title: "over the last 3 rounds / over the whole probe window",
              },
              pct(u.recentLoss) + " / " + pct(u.loss),
            ),
            el("dt", {}, "RTT"),
            el("dd", { class: "rtt" }, dead(u) ? "–" : ms(u.rtt) + " ± " + ms(u.jitter)),
            el("dt", {}, "weight / tier"),
            el("dd", {}, u.weight + " / " + u.tier + (u.active ? " · active" : " · not active")),
            el("dt", {}, "connections"),
            el(
              "dd",
              { class: "connections" },
              u.connections === null ? "–" : String(u.connections),
            ),
            el("dt", {}, "in / out"),
            el("dd", {}, bytes(u.rxBytes) + " / " + bytes(u.txBytes)),
            el("dt", {}, "down / up now"),
            el(
              "dd",
              { class: "throughput" },
              u.throughput ? rate(u.throughput.down) + " / " + rate(u.throughput.up) : "–",
            ),
            el("dt", {}, u.interface),
            el("dd", {}, (u.address || "no address") + " via " + (u.gateway || "no gateway")),
            ...(u.ipv6 ? ipv6Rows(u.ipv6) : []),
            ...(u.bandwidth ? capacityRows(u.bandwidth) : []),
            ...(u.quota ? quotaRows(u.quota) : []),
          ),
          u.reason ? el("p", { class: "reason" }, (u.ipv6 ? "IPv4: " : "") + u.reason) : null,
          u.ipv6 && u.ipv6.reason ? el("p", { class: "reason" }, "IPv6: " + u.ipv6.reason) : null,
        ),
      ),
    );
    renderShare(status.uplinks);
    renderPolicies(status);
  }

  /**
   * The policies panel: per policy, where its new connections go now (the
   * members chosen, their shares and tier) or its last resort; and a banner
   * while a policy runs on a backup tier (its members chosen are all of a
   * tier above the best tier of the uplinks it could use) or its last resort.
   */
  function renderPolicies(status) {
    const tierOf = new Map(status.uplinks.map((u) => [u.name, u.tier]));
    const bestTier = Math.min(...status.uplinks.map((u) => u.tier));
    const warnings = [];
    if (status.reason) warnings.push("last resort: " + status.reason);
    const rows = Object.entries(status.policies || {}).map(([name, choice]) => {
      if (choice.kind !== "balance") {
        warnings.push("policy " + name + " runs on its last resort (" + choice.kind + ")");
        return el(
          "li",
          { dataset: { policy: name, mode: "last-resort" } },
          el("strong", {}, name),
          el("span", { class: "last-resort" }, "last resort: " + choice.kind),
        );
      }
      const total = choice.members.reduce((n, m) => n + m.weight, 0);
      const tiers = choice.members.map((m) => m.tier ?? tierOf.get(m.uplink) ?? 1);
      const tier = tiers.length === 0 ? bestTier : Math.min(...tiers);
      const backup = choice.members.length > 0 && tier > bestTier;
      if (choice.members.length === 0) warnings.push("policy " + name + ": no uplink usable");
      else if (backup) {
        warnings.push(
          "policy " +
            name +
            " runs on its tier-" +
            tier +
            " backup (" +
            choice.members.map((m) => m.uplink).join(", ") +
            ")",
        );
      }
      return el(
        "li",
        { dataset: { policy: name, mode: backup ? "backup" : "normal" } },
        el("strong", {}, name),
        el(
          "span",
          {},
          choice.members.length === 0
            ? "none"
            : choice.members
                .map(
                  (m) =>
                    m.uplink +
                    " " +
                    (total > 0 ? Math.round((100 * m.weight) / total) : 0) +
                    "% (tier " +
                    (m.tier ?? tierOf.get(m.uplink) ?? 1) +
                    ")",
                )
                .join(", "),
        ),
      );
    });
    document.getElementById("policies").replaceChildren(...rows);
    const banner = document.getElementById("banner");
    banner.hidden = warnings.length === 0;
    banner.replaceChildren(...warnings.map((w) => el("p", {}, w)));
  }

  /** The capacity line of an uplink's card: down / up, and the speed test's time when measured. */
  function capacityRows(b) {
    const figure = (v) => (v === null ? "–" : rate(v));
    const measured =
      b.source === "speedtest" && b.measured_at
        ? " · measured " + new Date(b.measured_at).toLocaleString("en-GB")
        : "";
    return [
      el("dt", {}, "capacity"),
      el("dd", { class: "capacity" }, figure(b.down) + " / " + figure(b.up) + measured),
    ];
  }

  /** The quota lines of an uplink's card: used of the limit (%), and when the period ends. */
  function quotaRows(q) {
    const share = q.limit_bytes > 0 ? Math.floor((q.used_bytes / q.limit_bytes) * 100) : 0;
    const end = new Date(q.period_end);
    const resets = end.getDate() + " " + end.toLocaleString("en-GB", { month: "short" });
    return [
      el("dt", {}, "quota"),
      el(
        "dd",
        { class: q.exceeded ? "quota exceeded" : "quota" },
        (q.exceeded ? "exceeded: " : share + "% · ") +
          bytes(q.used_bytes) +
          " of " +
          bytes(q.limit_bytes) +
          ", resets " +
          resets,
      ),
    ];
  }

  /** The IPv6 lines of an uplink's card: loss, RTT, whether it takes new IPv6 connections, address. */
  function ipv6Rows(v6) {
    return [
      el("dt", {}, "IPv6 loss now / window, RTT"),
      el(
        "dd",
        { class: "ipv6" },
        pct(v6.recentLoss) +
          " / " +
          pct(v6.loss) +
          ", " +
          (dead(v6) ? "–" : ms(v6.rtt) + " ± " + ms(v6.jitter)) +
          (v6.active ? " · active" : " · not active"),
      ),
      el("dt", {}, "IPv6"),
      el(
        "dd",
        {},
        (v6.address || "no global address") +
          " via " +
          (v6.gateway || "no gateway") +
          (v6.prefix ? " · prefix " + v6.prefix : ""),
      ),
    ];
  }

  function renderShare(uplinks) {
    const total = uplinks.reduce((n, u) => n + (u.connections || 0), 0);
    const bar = document.getElementById("share");
    const legend = document.getElementById("share-legend");
    bar.replaceChildren(
      ...uplinks
        .filter((u) => total > 0 && u.connections > 0)
        .map((u) =>
          el("span", {
            style:
              "width:" +
              ((100 * u.connections) / total).toFixed(2) +
              "%;background:" +
              colorOf(u.name),
            title: u.name + ": " + u.connections,
          }),
        ),
    );
    legend.replaceChildren(
      ...uplinks.map((u) => {
        const share = total > 0 ? ((100 * (u.connections || 0)) / total).toFixed(1) + " %" : "–";
        const swatch = el("i", { style: "background:" + colorOf(u.name) });
        return el(
          "li",
          { dataset: { uplink: u.name } },
          swatch,
          u.name + " " + share + " (" + (u.connections === null ? "–" : u.connections) + ")",
        );
      }),
    );
  }

  function eventItem(e) {
    return el(
      "li",
      { dataset: { uplink: e.uplink, to: e.to } },
      el("time", { datetime: e.time }, clock(e.time)),
      el("strong", {}, e.uplink + (e.family === 6 ? " IPv6" : " IPv4")),
      el("span", { class: "to-" + e.to }, e.from + " → " + e.to),
      el("span", {}, e.reason),
    );
  }

  function renderEvents() {
    const list = document.getElementById("events");
    const newest = state.events.slice(-MAX_EVENTS).reverse();
    list.replaceChildren(...newest.map(eventItem));
    if (newest.length === 0) list.append(el("li", {}, "no transitions yet"));
  }

  // ---- charts ---------------------------------------------------------------

  function chartSize(id) {
    const box = document.getElementById(id);
    return { width: Math.max(300, box.clientWidth), height: 220 };
  }

  function makeChart(id, names, unit) {
    const box = document.getElementById(id);
    box.replaceChildren();
    if (typeof uPlot === "undefined") {
      box.textContent = "charts unavailable (uPlot did not load)";
      return null;
    }
    const opts = {
      ...chartSize(id),
      scales: {
        x: { time: true },
        y: { range: (u, min, max) => [0, Math.max(max, unit === "%" ? 5 : 1)] },
      },
      series: [
        { value: (u, t) => (t == null ? "–" : hms(new Date(t * 1000))) },
        ...names.map((n) => ({ label: n, stroke: colorOf(n), width: 2, spanGaps: false })),
      ],
      // Times of day in 24 hours, as the events list writes them.
      axes: [{ values: (u, ticks) => ticks.map((t) => hms(new Date(t * 1000))) }, { label: unit }],
      legend: { live: true },
    };
    return new uPlot(opts, [[], ...names.map(() => [])], box);
  }

  function ensureCharts() {
    const names = state.uplinks.map((u) => u.name);
    const key = names.join(",");
    if (key === state.chartKey) return;
    state.chartKey = key;
    for (const n of names) {
      if (!state.rtt.has(n))
        state.rtt.set(
          n,
          state.xs.map(() => null),
        );
      if (!state.loss.has(n))
        state.loss.set(
          n,
          state.xs.map(() => null),
        );
    }
    state.charts.rtt?.destroy();
    state.charts.loss?.destroy();
    state.charts.rtt = makeChart("rtt-chart", names, "ms");
    state.charts.loss = makeChart("loss-chart", names, "%");
    drawCharts();
  }

  function push(t, uplinks) {
    state.xs.push(t / 1000);
    const by = new Map(uplinks.map((u) => [u.name, u]));
    for (const u of state.uplinks) {
      if (!state.rtt.has(u.name))
        state.rtt.set(
          u.name,
          state.xs.slice(0, -1).map(() => null),
        );
      if (!state.loss.has(u.name))
        state.loss.set(
          u.name,
          state.xs.slice(0, -1).map(() => null),
        );
    }
    for (const [name, ys] of state.rtt) {
      const u = by.get(name);
      ys.push(u === undefined || dead(u) ? null : (u.rtt ?? null));
    }
    for (const [name, ys] of state.loss) ys.push(by.get(name)?.recentLoss ?? null);
    if (state.xs.length > MAX_POINTS) {
      state.xs.shift();
      for (const ys of state.rtt.values()) ys.shift();
      for (const ys of state.loss.values()) ys.shift();
    }
  }

  function drawCharts() {
    const names = state.uplinks.map((u) => u.name);
    if (state.charts.rtt)
      state.charts.rtt.setData([state.xs, ...names.map((n) => state.rtt.get(n) || [])]);
    if (state.charts.loss)
      state.charts.loss.setData([state.xs, ...names.map((n) => state.loss.get(n) || [])]);
  }

  window.addEventListener("resize", () => {
    state.charts.rtt?.setSize(chartSize("rtt-chart"));
    state.charts.loss?.setSize(chartSize("loss-chart"));
  });

  // ---- live updates ---------------------------------------------------------

  let lastPush = 0;

  function onStatus(status) {
    renderUplinks(status);
    ensureCharts();
    const now = Date.now();
    // Transitions push an extra status; keep at most one chart point per 500 ms.
    if (now - lastPush >= 500) {
      lastPush = now;
      push(now, status.uplinks);
      drawCharts();
    }
  }

  function onTransition(t) {
    state.events.push(t);
    if (state.events.length > MAX_EVENTS) state.events.shift();
    renderEvents();
    const card = document.querySelector('.uplink[data-uplink="' + CSS.escape(t.uplink) + '"]');
    if (card && t.family === 6) {
      card.dataset.state6 = t.to;
      const badge = card.querySelector(".state6");
      if (badge) {
        badge.dataset.state = t.to;
        badge.textContent = "IPv6 " + t.to;
      }
    } else if (card) {
      card.dataset.state = t.to;
      card.querySelector(".state").textContent = card.dataset.state6 ? "IPv4 " + t.to : t.to;
    }
  }

  async function follow() {
    for (;;) {
      try {
        const res = await fetch("/events/stream", { headers: headers(), cache: "no-store" });
        if (res.status === 401) return askToken();
        if (!res.ok || !res.body) throw new Error("stream: " + res.status);
        setLive("live", "live");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) type = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length === 0) continue;
            const payload = JSON.parse(data.join("\n"));
            if (type === "status") onStatus(payload);
            else if (type === "transition") onTransition(payload);
          }
        }
      } catch (error) {
        console.warn("uplinkd stream:", error);
      }
      setLive("reconnecting", "reconnecting…");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  function askToken() {
    setLive("reconnecting", "token needed");
    const form = document.getElementById("login");
    form.hidden = false;
    form.onsubmit = (event) => {
      event.preventDefault();
      state.token = document.getElementById("token").value.trim() || null;
      if (state.token) sessionStorage.setItem("uplinkd-token", state.token);
      form.hidden = true;
      start();
    };
  }

  async function start() {
    try {
      const [status, events, history] = await Promise.all([
        getJson("/status"),
        getJson("/events?limit=" + MAX_EVENTS),
        getJson("/history"),
      ]);
      state.uplinks = status.uplinks;
      for (const sample of history.samples) push(sample.t, sample.uplinks);
      state.events = events.events.slice();
      renderEvents();
      onStatus(status);
      follow();
    } catch (error) {
      if (error.status === 401) return askToken();
      setLive("reconnecting", "cannot reach uplinkd; retrying");
      setTimeout(start, 2000);
    }
  }

  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("uplinkd-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  state.token = sessionStorage.getItem("uplinkd-token");
  start();
})();
