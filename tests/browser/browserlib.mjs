// What the browser tests share: TAP output, polling with a deadline, Debian's Chromium.
import { chromium } from "playwright-core";

// ok(cond, desc, extra): one TAP line (extra explains a failure); done() prints the plan.
export function tap() {
  let n = 0;
  return {
    ok(cond, desc, extra) {
      n++;
      console.log(`${cond ? "ok" : "not ok"} ${n} - ${desc}`);
      if (!cond && extra) console.log(`#   ${extra}`);
    },
    done() { console.log(`1..${n}`); },
  };
}

// Whether fn() turned true within ms (asked every 100 ms; a throw counts as not yet).
export async function until(fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    try { if (await fn()) return true; } catch (e) { /* not yet */ }
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
