// The status page's server card with several servers, in real headless Chromium (playwright-core).
// Usage: node status_servers.mjs BASE_URL PID_OF_SERVER_1
// Prints TAP: both servers listed and healthy, then, with server 1 killed, the card says so.
import { launch, tap, until } from "./browserlib.mjs";

const [base, pid1] = process.argv.slice(2);
const t = tap();
const ok = t.ok;
const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/status/");
  const card = async () => (await page.textContent("#server")) + " | " + (await page.textContent("#server-sub"));
  ok(await until(async () => (await page.textContent("#server")) === "2/2 healthy", 10000),
    "the card counts both servers healthy", await card());
  const sub = await page.textContent("#server-sub");
  ok(/#0 pid \d+/.test(sub) && /#1 pid \d+/.test(sub), "and lists each with its pid", sub);
  process.kill(Number(pid1), "SIGKILL");
  ok(await until(async () => (await page.textContent("#server")) === "1/2 healthy", 10000),
    "a killed server shows at once", await card());
  ok(await until(async () => /#1 (backoff|starting)/.test(await page.textContent("#server-sub")), 10000),
    "with its state", await card());
  ok(errors.length === 0, "no page errors", errors.join("; "));
} finally {
  await browser.close();
}
t.done();
