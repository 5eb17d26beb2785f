// The chat of one thread on useStream: streamed tokens, tool calls with their results, the
// state of graphs without messages, interrupts with a form that resumes, and Stop.
// reconnectOnMount keeps the running run's id in sessionStorage, so a reload rejoins its stream.
import { useStream } from "@langchain/langgraph-sdk/react";
import { useState } from "react";

import { clientOptions, describeError } from "./api.js";
import { InterruptForm } from "./InterruptForm.jsx";
import { MessageList } from "./MessageList.jsx";

// An interrupt() with a value to answer; useStream also reports a thread stopped between steps
// (a cancelled run, a breakpoint) as an interrupt, without a value.
function pendingInterrupt(stream) {
  return stream.interrupts.find((interrupt) => interrupt.value !== undefined);
}

// A stopped run leaves the task it cut off failed with LangGraph's CancelledError() in the
// thread's newest state; useStream clears it right after its own stop(), but a reload (or a stop
// from elsewhere) reads it back as the thread's error. It is a stop, not a failure.
function isCancellation(error) {
  return String(error?.message ?? error ?? "") === "CancelledError()";
}

// How much of a new thread's first message becomes its title (the thread list shows it).
const TITLE_LENGTH = 80;

function runStatus(stream, stopped) {
  if (stream.isLoading) return "running";
  if (stream.error && !isCancellation(stream.error)) return "error";
  if (stopped || stream.error) return "stopped";
  return pendingInterrupt(stream) ? "interrupted" : "idle";
}

export function Chat({ settings, assistantId, threadId, onThreadId, onThreadsChanged }) {
  const [draft, setDraft] = useState("");
  const [asJson, setAsJson] = useState(false);
  const [inputError, setInputError] = useState(null);
  const [stopped, setStopped] = useState(false);
  const stream = useStream({
    ...clientOptions(settings),
    assistantId,
    threadId,
    onThreadId,
    reconnectOnMount: true,
    onFinish: () => onThreadsChanged(),
    onError: () => onThreadsChanged(),
  });

  const send = (event) => {
    event.preventDefault();
    let input;
    if (asJson) {
      try {
        input = JSON.parse(draft || "{}");
      } catch (error) {
        setInputError(`Not JSON: ${error.message}`);
        return;
      }
    } else {
      if (!draft.trim()) return;
      input = { messages: [{ type: "human", content: draft }] };
    }
    setInputError(null);
    setStopped(false);
    setDraft("");
    const optimistic = asJson
      ? undefined
      : (previous) => ({ ...previous, messages: [...(previous.messages ?? []), ...input.messages] });
    // A new thread is made with the submit: its first message titles it, in its metadata.
    const title = !threadId && !asJson ? { metadata: { title: draft.trim().slice(0, TITLE_LENGTH) } } : {};
    stream.submit(input, { optimisticValues: optimistic, ...title });
    onThreadsChanged();
  };

  const stop = async () => {
    await stream.stop();
    setStopped(true);
    onThreadsChanged();
  };

  const status = runStatus(stream, stopped);
  const values = stream.values ?? {};
  const hasMessages = Array.isArray(values.messages);
  return (
    <main className="chat">
      <header>
        <span data-testid="thread-id">{threadId ?? "new thread"}</span>
        <span className={`status ${status}`} data-testid="run-status">
          {status}
        </span>
        <button type="button" data-testid="stop" disabled={!stream.isLoading} onClick={stop}>
          Stop
        </button>
      </header>
      {stream.isThreadLoading && <p className="notice">Loading the thread…</p>}
      <MessageList messages={stream.messages} />
      {(!hasMessages || asJson) && Object.keys(values).length > 0 && (
        <details open className="values">
          <summary>State</summary>
          <pre data-testid="values">{JSON.stringify(values, null, 2)}</pre>
        </details>
      )}
      {status === "error" && (
        <p className="error" data-testid="run-error">
          {describeError(stream.error)}
        </p>
      )}
      {status === "interrupted" && (
        <InterruptForm
          interrupt={pendingInterrupt(stream)}
          onResume={(resume) => stream.submit(null, { command: { resume } })}
        />
      )}
      <form className="composer" onSubmit={send}>
        <textarea
          data-testid="input"
          value={draft}
          placeholder={asJson ? '{"steps": 5, "delay": 0.5}' : "Message"}
          onChange={(event) => setDraft(event.target.value)}
          onKeyDown={(event) => {
            if (event.key === "Enter" && !event.shiftKey && !asJson) send(event);
          }}
        />
        <label>
          <input
            type="checkbox"
            data-testid="json-input"
            checked={asJson}
            onChange={(event) => setAsJson(event.target.checked)}
          />
          input as JSON
        </label>
        <button type="submit" data-testid="send" disabled={stream.isLoading}>
          Send
        </button>
        {inputError && <p className="error">{inputError}</p>}
      </form>
    </main>
  );
}
