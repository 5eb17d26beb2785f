// The official JS client (@langchain/langgraph-sdk, pinned in package-lock.json) against a live
// server, as a JS application uses it. Run by tests/test_js_sdk.py, one node test per pytest test:
//   DEERFLOW_API_URL=http://127.0.0.1:PORT/api DEERFLOW_API_KEY=... node --test tests/js/sdk_client.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "@langchain/langgraph-sdk";

const apiUrl = process.env.DEERFLOW_API_URL;
const apiKey = process.env.DEERFLOW_API_KEY;
assert.ok(apiUrl && apiKey, "DEERFLOW_API_URL and DEERFLOW_API_KEY are required");

const client = new Client({ apiUrl, apiKey });

async function collect(stream) {
  const parts = [];
  for await (const part of stream) parts.push(part);
  return parts;
}

const eventKey = ({ id, event, data }) => JSON.stringify([id, event, data]);

/** Events and their ids as a strict client reads them off the wire: `id:` fields verbatim. */
async function rawEvents(path, lastEventId) {
  const response = await fetch(apiUrl + path, {
    headers: { "X-Api-Key": apiKey, Accept: "text/event-stream", "Last-Event-ID": lastEventId },
  });
  assert.equal(response.status, 200);
  const frames = (await response.text()).split(/\r?\n\r?\n/).filter((frame) => frame.trim());
  return frames.map((frame) => {
    const fields = Object.fromEntries(
      frame.split(/\r?\n/).map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]),
    );
    return { id: fields.id, event: fields.event };
  });
}

/** A `slow` run in the background whose events are kept for replay; resolves to the run. */
async function startSlowRun(threadId, steps, delay) {
  return client.runs.create(threadId, "slow", {
    input: { steps, delay },
    streamMode: ["values", "custom"],
    streamResumable: true,
  });
}

/** Read a run's stream from the start until `until(part)` holds, then drop the connection. */
async function readUntil(threadId, runId, until) {
  const controller = new AbortController();
  const seen = [];
  try {
    for await (const part of client.runs.joinStream(threadId, runId, {
      lastEventId: "-1",
      signal: controller.signal,
    })) {
      seen.push(part);
      if (until(part)) {
        controller.abort();
        break;
      }
    }
  } catch (error) {
    if (error?.name !== "AbortError") throw error;
  }
  return seen;
}

test("runs.stream with values and messages-tuple", async () => {
  const thread = await client.threads.create();
  const parts = await collect(
    client.runs.stream(thread.thread_id, "agent", {
      input: { messages: [{ role: "user", content: "What is 6 * 7?" }] },
      streamMode: ["values", "messages-tuple"],
    }),
  );
  assert.equal(parts[0].event, "metadata");
  assert.ok(parts[0].data.run_id, "metadata names the run");
  const tuples = parts.filter((part) => part.event === "messages");
  assert.ok(tuples.length > 2, "the answer streams as several message chunks");
  for (const { data } of tuples) {
    assert.ok(Array.isArray(data) && data.length === 2, "each messages-tuple event is [chunk, metadata]");
    assert.equal(typeof data[1].langgraph_node, "string");
  }
  const toolCallChunk = tuples.find(({ data }) => data[0].tool_calls?.length || data[0].tool_call_chunks?.length);
  assert.ok(toolCallChunk, "a chunk carries the calculator's tool call");
  const values = parts.filter((part) => part.event === "values").at(-1).data;
  const [human, call, result, answer] = values.messages;
  assert.equal(human.type, "human");
  assert.equal(call.tool_calls[0].name, "calculator");
  assert.equal(result.type, "tool");
  assert.match(answer.content, /42/);
  const run = await client.runs.get(thread.thread_id, parts[0].data.run_id);
  assert.equal(run.status, "success");
});

test("joinStream with lastEventId: seen plus resumed equals the -1 replay", async () => {
  const thread = await client.threads.create();
  const run = await startSlowRun(thread.thread_id, 4, 0.3);
  const seen = await readUntil(thread.thread_id, run.run_id, (part) => part.event === "custom");
  const lastSeenId = seen.at(-1).id;
  assert.ok(lastSeenId, "the events carry ids");

  const resumed = await collect(
    client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: lastSeenId }),
  );
  // A resumed connection opens with its own metadata frame, not an event of the run's stream.
  const resumedEvents = resumed[0]?.event === "metadata" ? resumed.slice(1) : resumed;
  assert.equal(resumedEvents.at(-1).event, "end");

  const replay = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.deepEqual([...seen, ...resumedEvents].map(eventKey), replay.map(eventKey));
  assert.deepEqual(
    replay.filter((part) => part.event === "custom").map((part) => part.data.tick),
    [1, 2, 3, 4],
  );
});

test("a resumed stream repeats no event id", async () => {
  const thread = await client.threads.create();
  const run = await startSlowRun(thread.thread_id, 2, 0.2);
  const seen = await readUntil(thread.thread_id, run.run_id, (part) => part.event === "custom");
  const path = `/threads/${thread.thread_id}/runs/${run.run_id}/stream`;
  const resumed = await rawEvents(path, seen.at(-1).id);
  const seenIds = new Set(seen.map((part) => part.id));
  const repeated = resumed.filter((frame) => frame.id !== undefined && seenIds.has(frame.id));
  assert.deepEqual(repeated, [], "ids already seen come back on the resumed connection");
  assert.equal(resumed.at(-1).event, "end");
});

test("getHistory pages with before until the first checkpoint", async () => {
  const thread = await client.threads.create();
  for (const question of ["What is 6 * 7?", "What is 2 + 3?"]) {
    await client.runs.wait(thread.thread_id, "agent", {
      input: { messages: [{ role: "user", content: question }] },
    });
  }
  const everything = await client.threads.getHistory(thread.thread_id, { limit: 100 });
  assert.ok(everything.length > 6, "two agent turns leave more checkpoints than one page");
  assert.equal(everything.at(-1).parent_checkpoint, null, "the oldest state is the first checkpoint");

  const paged = [];
  let before;
  for (let page = 0; page < everything.length; page += 1) {
    const states = await client.threads.getHistory(thread.thread_id, { limit: 3, before });
    assert.ok(states.length <= 3);
    paged.push(...states);
    if (states.length < 3 || states.at(-1).parent_checkpoint === null) break;
    before = { configurable: { checkpoint_id: states.at(-1).checkpoint.checkpoint_id } };
  }
  const ids = (states) => states.map((state) => state.checkpoint.checkpoint_id);
  assert.deepEqual(ids(paged), ids(everything));
});

test("cancel with wait stops a running run", async () => {
  const thread = await client.threads.create();
  const run = await startSlowRun(thread.thread_id, 100, 0.2);
  await readUntil(thread.thread_id, run.run_id, (part) => part.event === "custom");
  await client.runs.cancel(thread.thread_id, run.run_id, true);
  const cancelled = await client.runs.get(thread.thread_id, run.run_id);
  assert.equal(cancelled.status, "interrupted");
  const after = await client.threads.get(thread.thread_id);
  assert.notEqual(after.status, "busy", "the thread is free for the next run");
  const state = await client.threads.getState(thread.thread_id);
  assert.ok(state.values.ticks.length < 100, "the run stopped before its last step");
});

async function interruptedAskHuman() {
  const thread = await client.threads.create();
  const values = await client.runs.wait(thread.thread_id, "ask_human", {
    input: { question: "What is your name?" },
  });
  return { thread, values };
}

test("interrupt then resume with command", async () => {
  const { thread, values } = await interruptedAskHuman();
  assert.deepEqual(values.__interrupt__.map((item) => item.value), [{ question: "What is your name?" }]);
  const waiting = await client.threads.get(thread.thread_id);
  assert.equal(waiting.status, "interrupted");
  const state = await client.threads.getState(thread.thread_id);
  assert.deepEqual(state.next, ["ask"]);
  assert.deepEqual(state.tasks[0].interrupts.map((item) => item.value), [{ question: "What is your name?" }]);

  const resumed = await client.runs.wait(thread.thread_id, "ask_human", { command: { resume: "Ada" } });
  assert.equal(resumed.answer, "Ada");
  assert.deepEqual(
    resumed.messages.map((message) => message.content),
    ["You answered: Ada", "done"],
  );
  const done = await client.threads.get(thread.thread_id);
  assert.equal(done.status, "idle");
});

test("a run that stops at interrupt() ends success", async () => {
  const { thread } = await interruptedAskHuman();
  const [run] = await client.runs.list(thread.thread_id);
  assert.equal(run.status, "success");
  const waiting = await client.threads.get(thread.thread_id);
  assert.equal(waiting.status, "interrupted");
  assert.ok(Object.keys(waiting.interrupts).length > 0, "the thread lists its interrupts");
});

// Every write the client sends, with its body (JSON) or none at all (copy, cancel, delete): the
// server takes a body only as application/json (else 415), so a call of the client sending another
// media type, or a body-less call taken for one, would fail here.
test("every write call is accepted, with a body or without", async () => {
  // Assistants come from the graph registry (their writes are a 405 by design): its searches only.
  const found = await client.assistants.search({ graphId: "echo" });
  assert.ok(found.length >= 1);
  assert.ok((await client.assistants.count({ graphId: "echo" })) >= 1);
  const assistant = found[0];

  const thread = await client.threads.create({ metadata: { sdk: "js" } });
  await client.threads.update(thread.thread_id, { metadata: { step: "updated" } });
  await client.runs.wait(thread.thread_id, assistant.assistant_id, { input: { messages: [] } });
  await client.threads.updateState(thread.thread_id, { values: { messages: [] }, asNode: "echo" });
  const matching = await client.threads.search({ metadata: { step: "updated" } });
  assert.ok(matching.some((item) => item.thread_id === thread.thread_id));
  assert.ok((await client.threads.count({ metadata: { step: "updated" } })) >= 1);

  const copy = await client.threads.copy(thread.thread_id);
  assert.notEqual(copy.thread_id, thread.thread_id);

  const waiting = await client.runs.create(thread.thread_id, assistant.assistant_id, {
    input: { messages: [] },
    afterSeconds: 3600,
  });
  await client.runs.cancel(thread.thread_id, waiting.run_id);
  await client.runs.join(thread.thread_id, waiting.run_id);
  assert.equal((await client.runs.get(thread.thread_id, waiting.run_id)).status, "interrupted");
  const other = await client.runs.create(thread.thread_id, assistant.assistant_id, {
    input: { messages: [] },
    afterSeconds: 3600,
  });
  await client.runs.cancelMany({ threadId: thread.thread_id, runIds: [other.run_id] });
  await client.runs.join(thread.thread_id, other.run_id);
  await client.runs.delete(thread.thread_id, other.run_id);

  const stateless = await client.runs.wait(null, assistant.assistant_id, { input: { messages: [] } });
  assert.ok(stateless !== null);

  await client.threads.delete(copy.thread_id);
  await client.threads.delete(thread.thread_id);
  await assert.rejects(client.threads.get(thread.thread_id), (error) => error.status === 404);
});
