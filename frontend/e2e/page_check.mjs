// Opens the frontend in headless Chromium (Debian's, not a downloaded build), waits until the health
// check has an answer, saves a screenshot and prints what a person sees as one JSON line.
// Usage: node e2e/page_check.mjs <page url> <screenshot.png>   (driven by tests/e2e/test_browser.py)
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node e2e/page_check.mjs <page url> <screenshot.png>");
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
  await page.goto(url, { waitUntil: "load", timeout: TIMEOUT_MS });
  await page.waitForFunction(
    () => document.querySelector('[data-testid="health"]')?.getAttribute("data-state") !== "checking",
    null,
    { timeout: TIMEOUT_MS },
  );
  const text = async (testId) => (await page.getByTestId(testId).textContent())?.trim() ?? null;
  const result = {
    stage: await text("stage"),
    apiUrl: await text("api-url"),
    healthState: await page.getByTestId("health").getAttribute("data-state"),
    health: await text("health"),
    alerts: await page.getByRole("alert").allTextContents(),
    requests,
    consoleErrors,
  };
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
