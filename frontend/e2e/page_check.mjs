// Opens the frontend in headless Chromium (Debian's, not a downloaded build), waits until the health
// check has an answer, saves a screenshot and prints what a person sees as one JSON line.
// Usage: node e2e/page_check.mjs <page url> <screenshot.png> [access token]   (driven by tests/e2e/)
// With a token, the page starts as if the person had pasted it, and the check also waits for /api/v1/me.
import { chromium } from "playwright-core";

const [url, screenshot, token] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node e2e/page_check.mjs <page url> <screenshot.png> [access token]");
  process.exit(2);
}
const TIMEOUT_MS = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: TIMEOUT_MS,
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  const consoleErrors = [];
  page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  if (token) {
    await page.addInitScript((value) => window.sessionStorage.setItem("canvalo.accessToken", value), token);
  }
  await page.goto(url, { waitUntil: "load", timeout: TIMEOUT_MS });
  await page.waitForFunction(
    () =>
      document.querySelector('[data-testid="health"]')?.getAttribute("data-state") !== "checking" &&
      document.querySelector('[data-testid="me"]')?.getAttribute("data-state") !== "loading",
    null,
    { timeout: TIMEOUT_MS },
  );
  const text = async (testId) => (await page.getByTestId(testId).textContent())?.trim() ?? null;
  const result = {
    stage: await text("stage"),
    apiUrl: await text("api-url"),
    healthState: await page.getByTestId("health").getAttribute("data-state"),
    health: await text("health"),
    meState: await page.getByTestId("me").getAttribute("data-state"),
    me: await text("me"),
    alerts: await page.getByRole("alert").allTextContents(),
    requests,
    consoleErrors,
  };
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
