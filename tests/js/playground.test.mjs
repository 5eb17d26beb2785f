// The playground (/playground/) in headless Chromium against a live server, as a person uses it.
// Run by tests/test_playground_browser.py, one node test per pytest test:
//   DEERFLOW_URL=http://127.0.0.1:PORT CHROMIUM_PATH=/usr/bin/chromium node --test tests/js/playground.test.mjs
// The local-mode tests need a server in the local auth mode; the session test logs in with
// DEERFLOW_LOGIN_USERNAME / DEERFLOW_LOGIN_PASSWORD through the admin's login page.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "@langchain/langgraph-sdk";

import { withPage } from "./browser.mjs";

const baseUrl = process.env.DEERFLOW_URL;
assert.ok(baseUrl, "DEERFLOW_URL is required");
const apiUrl = baseUrl + (process.env.DEERFLOW_API_PREFIX ?? "/api");

const RUN_TIMEOUT_MS = 60_000; // a slow run's whole length, on a busy two-core machine

async function openPlayground(page, assistant) {
  await page.goto(`${baseUrl}/playground/?assistant=${assistant}`);
  await page.getByTestId("assistant").waitFor();
  assert.equal(await page.getByTestId("assistant").inputValue(), assistant);
}

async function send(page, text, { json = false } = {}) {
  if (json) await page.getByTestId("json-input").check();
  await page.getByTestId("input").fill(text);
  await page.getByTestId("send").click();
}

async function waitForStatus(page, status, timeout = RUN_TIMEOUT_MS) {
  await page.waitForFunction(
    (wanted) => document.querySelector('[data-testid="run-status"]')?.textContent === wanted,
    status,
    { timeout },
  );
}

/** Wait until the state the page shows satisfies `predicate(values)` (a function's source). */
async function waitForValues(page, predicate, timeout = RUN_TIMEOUT_MS) {
  await page.waitForFunction(
    (source) => {
      const shown = document.querySelector('[data-testid="values"]')?.textContent;
      if (!shown) return false;
      return new Function("values", `return (${source})(values);`)(JSON.parse(shown));
    },
    predicate.toString(),
    { timeout },
  );
}

async function shownValues(page) {
  return JSON.parse(await page.getByTestId("values").textContent());
}

async function currentThreadId(page) {
  await page.waitForFunction(() => new URLSearchParams(window.location.search).get("thread"));
  return page.evaluate(() => new URLSearchParams(window.location.search).get("thread"));
}

function aiText(page) {
  return page.locator('[data-testid="message"][data-type="ai"] .text');
}

test("local mode: a message to agent shows the streamed answer and the tool call", async () => {
  await withPage(async (page) => {
    const streamModes = [];
    page.on("request", (request) => {
      if (request.method() === "POST" && /\/runs\/stream$/.test(new URL(request.url()).pathname)) {
        streamModes.push(...(request.postDataJSON().stream_mode ?? []));
      }
    });
    await openPlayground(page, "agent");
    await send(page, "What is 6 * 7?");
    const call = page.locator('[data-testid="tool-call"][data-name="calculator"]');
    await call.getByTestId("tool-result").filter({ hasText: "42" }).waitFor();
    await aiText(page).filter({ hasText: "42" }).waitFor();
    await waitForStatus(page, "idle");
    assert.match(await call.textContent(), /calculator\(.*6 \* 7/);
    assert.ok(streamModes.includes("messages-tuple"), `the page streams tokens: ${streamModes}`);
    await page.getByTestId("message").filter({ hasText: "What is 6 * 7?" }).waitFor();
  });
});

test("local mode: Stop cancels a slow run", async () => {
  await withPage(async (page) => {
    await openPlayground(page, "slow");
    await send(page, '{"steps": 200, "delay": 0.2}', { json: true });
    await waitForValues(page, (values) => values.count >= 1);
    await waitForStatus(page, "running");
    await page.getByTestId("stop").click();
    await waitForStatus(page, "stopped");
    const threadId = await currentThreadId(page);
    const client = new Client({ apiUrl });
    const [run] = await client.runs.list(threadId);
    await client.runs.join(threadId, run.run_id); // the page cancels without waiting
    assert.equal((await client.runs.get(threadId, run.run_id)).status, "interrupted");
    const state = await client.threads.getState(threadId);
    assert.ok(state.values.count < 200, "the run stopped before its last step");

    // reloaded, the thread still reads as stopped: the task the stop cut off is no failure
    await page.reload();
    await page.getByTestId("assistant").waitFor();
    await waitForValues(page, (values) => values.count >= 1);
    await waitForStatus(page, "stopped");
    assert.equal(await page.getByTestId("run-error").count(), 0);
  });
});

test("local mode: after a reload mid-run the page rejoins the run and shows the rest", async () => {
  await withPage(async (page) => {
    await openPlayground(page, "slow");
    await send(page, '{"steps": 8, "delay": 0.4}', { json: true });
    await waitForValues(page, (values) => values.count >= 1);
    const threadId = await currentThreadId(page);
    const rejoins = [];
    page.on("request", (request) => {
      if (request.method() === "GET" && /\/runs\/[^/]+\/stream$/.test(new URL(request.url()).pathname)) {
        rejoins.push(request.url());
      }
    });
    await page.reload();
    await waitForValues(page, (values) => values.count === 8 && values.ticks.length === 8);
    await waitForStatus(page, "idle");
    assert.equal(await currentThreadId(page), threadId);
    assert.ok(rejoins.length > 0, "the reloaded page joined the run's stream");
    assert.deepEqual((await shownValues(page)).ticks, [1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

test("local mode: answering an ask_human interrupt resumes the run to its end", async () => {
  await withPage(async (page) => {
    await openPlayground(page, "ask_human");
    await send(page, '{"question": "What is your name?"}', { json: true });
    await page.getByTestId("interrupt-question").filter({ hasText: "What is your name?" }).waitFor();
    await waitForStatus(page, "interrupted");
    await page.getByTestId("interrupt-answer").fill("Ada");
    await page.getByTestId("resume").click();
    await aiText(page).filter({ hasText: "You answered: Ada" }).waitFor();
    await aiText(page).filter({ hasText: /^done$/ }).waitFor();
    await waitForStatus(page, "idle");
    assert.equal(await page.getByTestId("interrupt").count(), 0);
    const thread = await new Client({ apiUrl }).threads.get(await currentThreadId(page));
    assert.equal(thread.status, "idle");
    assert.equal(thread.values.answer, "Ada");
  });
});

test("local mode: reopening a thread from the list shows its history", async () => {
  await withPage(async (page) => {
    const searches = [];
    page.on("request", (request) => {
      if (request.method() === "POST" && /\/threads\/search$/.test(new URL(request.url()).pathname)) {
        searches.push(request.postDataJSON());
      }
    });
    await openPlayground(page, "agent");
    await send(page, "What is 2 + 3?");
    await aiText(page).filter({ hasText: "5" }).waitFor();
    await waitForStatus(page, "idle");
    const threadId = await currentThreadId(page);

    await page.getByTestId("new-thread").click();
    await page.waitForFunction(() => !new URLSearchParams(window.location.search).get("thread"));
    assert.equal(await page.getByTestId("message").count(), 0);

    const item = page.locator(`[data-testid="thread-item"][data-thread-id="${threadId}"]`);
    // Titled by its first message, which the list had without fetching the thread's values.
    await item.locator(".title").filter({ hasText: "What is 2 + 3?" }).waitFor();
    assert.ok(searches.length > 0, "the list searched the threads");
    for (const search of searches) assert.deepEqual(search.select, ["thread_id", "status", "metadata"]);
    await item.click();
    await page.getByTestId("message").filter({ hasText: "What is 2 + 3?" }).waitFor();
    await page.locator('[data-testid="tool-call"][data-name="calculator"]').getByTestId("tool-result").waitFor();
    await aiText(page).filter({ hasText: "5" }).waitFor();
    assert.equal(await currentThreadId(page), threadId);
  });
});

test("session auth: a logged-in user chats, the page sending the CSRF token", async () => {
  const username = process.env.DEERFLOW_LOGIN_USERNAME;
  const password = process.env.DEERFLOW_LOGIN_PASSWORD;
  assert.ok(username && password, "DEERFLOW_LOGIN_USERNAME and DEERFLOW_LOGIN_PASSWORD are required");
  await withPage(async (page) => {
    await page.goto(`${baseUrl}/playground/?assistant=echo`);
    await page.getByTestId("load-error").waitFor(); // token mode, no session: the API refuses
    await page.getByRole("link", { name: "Log in" }).click();
    await page.locator("#id_username").fill(username);
    await page.locator("#id_password").fill(password);
    await page.locator('input[type="submit"]').click();
    await page.waitForURL(/\/playground\//);
    await page.getByTestId("assistant").waitFor();
    await send(page, "hello over a session");
    await aiText(page).filter({ hasText: "echo: hello over a session" }).waitFor();
    await waitForStatus(page, "idle");
  });
});
