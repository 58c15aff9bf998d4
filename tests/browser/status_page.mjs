// The status page in real headless Chromium (Debian's), driven by playwright-core.
// Usage: node status_page.mjs BASE_URL SCREENSHOT_PATH OCPMD_PID OCPMCTL
// Prints TAP. Loads /status/, checks there are no console errors, that numbers change after a
// message is sent, and that hostile text from the data is shown as text, not run.
import { execFileSync } from "node:child_process";
import { launch, tap, until } from "./browserlib.mjs";

const [base, shot, ocpmdPid, ocpmctl] = process.argv.slice(2);
const t = tap();
const ok = t.ok;
const post = async (path, body, headers = {}) => {
  const r = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body) });
  return r.json();
};
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/status/");
  ok(await until(async () => (await page.textContent("#updated")).startsWith("updated"), 10000),
    "the page loads and polls the API");
  ok(await page.isHidden("#down"), "no 'manager down' banner while it answers");
  ok((await page.textContent("#node")) === "node " + process.env.OCPM_NODE_NAME,
    "the header names the node (node_name), as under a cluster's /nodes/NODE/status/");
  ok(await until(async () => (await page.textContent("#db")) === "ok" &&
      /pool \d+\/\d+ busy, \d+ refused/.test(await page.textContent("#db-sub")), 10000),
     "the database and the pool are shown healthy");
  const before = await page.textContent("#spawned");

  await post("/api/sessions", { id: "page" });
  const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
  await post("/api/sessions/page/messages", { text: "[[error]] " + hostile });
  await post("/api/sessions/page/messages", { text: "hello page" });
  ok(await until(async () => (await page.textContent("#spawned")) !== before, 10000),
    "live numbers change after messages are sent", `still ${before}`);
  ok(await until(async () => (await page.locator("#rows tr").count()) >= 2, 10000), "the executions table fills");
  ok(await until(async () => (await page.locator("#rows tr.bad").count()) >= 1, 10000), "the failure stands out");
  ok(await until(async () => (await page.textContent("#rows")).includes("<img src=x"), 10000),
    "hostile text is shown literally");
  ok(await page.evaluate(() => window.__pwned === undefined), "and never runs");
  ok((await page.locator("#rows img, #rows script").count()) === 0, "no element was injected");

  await page.selectOption("#f-status", "failed");
  ok(await until(async () => {
    const st = await page.locator("#rows td.status").allTextContents();
    return st.length >= 1 && st.every((s) => s === "failed");
  }, 10000), "the table filters by status");
  await page.selectOption("#f-status", "");
  ok(await until(async () => (await page.locator("#chart rect").count()) > 0, 10000), "the chart draws");
  await page.screenshot({ path: shot, fullPage: true });
  ok(errors.length === 0, "no console errors", errors.join(" | "));

  // A drain shows as a banner, and goes with the undrain.
  ok(await page.isHidden("#draining"), "no drain banner while it takes work");
  execFileSync(ocpmctl, ["drain"]);
  ok(await until(async () => await page.isVisible("#draining"), 10000), "a drain shows as a banner");
  execFileSync(ocpmctl, ["undrain"]);
  ok(await until(async () => await page.isHidden("#draining"), 10000), "and goes with the undrain");

  // The manager goes away: the page says so.
  process.kill(Number(ocpmdPid), "SIGTERM");
  ok(await until(async () => await page.isVisible("#down"), 15000), "it shows clearly when the manager is down");
} finally {
  await browser.close();
}
t.done();
process.exit(0);
