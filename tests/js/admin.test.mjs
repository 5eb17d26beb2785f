// The admin as a run console in headless Chromium against a live server, as staff use it.
// Run by tests/test_admin_browser.py: DEERFLOW_URL, CHROMIUM_PATH, DEERFLOW_LOGIN_USERNAME,
// DEERFLOW_LOGIN_PASSWORD and DEERFLOW_RUN_ID (a run the server is executing) come from it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { withPage } from "./browser.mjs";

const baseUrl = process.env.DEERFLOW_URL;
const runId = process.env.DEERFLOW_RUN_ID;
assert.ok(baseUrl && runId, "DEERFLOW_URL and DEERFLOW_RUN_ID are required");

async function logIn(page) {
  await page.goto(`${baseUrl}/admin/login/?next=/admin/`);
  await page.locator("#id_username").fill(process.env.DEERFLOW_LOGIN_USERNAME);
  await page.locator("#id_password").fill(process.env.DEERFLOW_LOGIN_PASSWORD);
  await page.locator('input[type="submit"]').click();
  await page.locator("#operations-status").waitFor(); // the index, with the queue's status
}

test("staff filter runs to running, cancel one and see it interrupted", async () => {
  await withPage(async (page) => {
    await logIn(page);
    await page.goto(`${baseUrl}/admin/runs/run/`);
    // The status filter's "running" choice, as staff click it.
    await page.locator("#changelist-filter").getByRole("link", { name: "Running", exact: true }).click();
    await page.waitForURL(/status__exact=running/);
    const row = page.locator("#result_list tbody tr", { hasText: runId });
    await row.waitFor();
    await row.locator('input[name="_selected_action"]').check();
    await page.locator('select[name="action"]').selectOption("cancel_interrupt");
    await page.locator('button[name="index"], input[name="index"]').first().click();
    await page.locator(".messagelist", { hasText: "1 run(s) cancelled" }).waitFor();

    await page.goto(`${baseUrl}/admin/runs/run/?q=${runId}`);
    const cancelled = page.locator("#result_list tbody tr", { hasText: runId });
    await cancelled.waitFor();
    assert.match(await cancelled.textContent(), /Interrupted/);
  });
});
