// Headless Chromium for browser tests, through playwright-core (pinned in package-lock.json).
// CHROMIUM_PATH names the browser (tests/node_tools.py's chromium_path fixture sets it).
//
//   import { withPage } from "./browser.mjs";
//   await withPage(async (page) => { await page.goto(url); ... });
//
// A page's console errors and uncaught exceptions are printed, so a failing test shows them.
import { chromium } from "playwright-core";

// Headless as root needs --no-sandbox; the rest keeps Chromium off the network (this machine
// allows loopback only) and quick to start.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

export const DEFAULT_TIMEOUT_MS = 30_000; // for one awaited condition (a selector, a text)

export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_PATH;
  if (!executablePath) throw new Error("CHROMIUM_PATH is not set");
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}

/** Run `body(page, context)` in a fresh browser context; the browser closes afterwards. */
export async function withPage(body) {
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(DEFAULT_TIMEOUT_MS);
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") console.error(`[page console] ${message.text()}`);
    });
    page.on("pageerror", (error) => console.error(`[page error] ${error.message}`));
    return await body(page, context);
  } finally {
    await browser.close();
  }
}
