// The page: an assistant picker, the thread list, and the chat of the current thread.
import { useCallback, useEffect, useMemo, useState } from "react";

import { describeError, makeClient } from "./api.js";
import { Chat } from "./Chat.jsx";
import { readLocation, writeLocation } from "./location.js";
import { ThreadList } from "./ThreadList.jsx";

export function App({ settings }) {
  const client = useMemo(() => makeClient(settings), [settings]);
  const initial = useMemo(readLocation, []);
  const [assistants, setAssistants] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const [assistantId, setAssistantId] = useState(initial.assistantId);
  const [threadId, setThreadId] = useState(initial.threadId);
  const [threadsVersion, setThreadsVersion] = useState(0);

  useEffect(() => {
    client.assistants
      .search({ limit: 100 })
      .then((found) => {
        setAssistants(found);
        setAssistantId((chosen) => {
          if (chosen && found.some((a) => a.assistant_id === chosen || a.graph_id === chosen)) return chosen;
          return (found.find((a) => a.graph_id === "agent") ?? found[0])?.graph_id ?? null;
        });
      })
      .catch((error) => setLoadError(error));
  }, [client]);

  useEffect(() => writeLocation({ assistantId, threadId }), [assistantId, threadId]);

  const openThread = useCallback((id) => setThreadId(id), []);
  const threadsChanged = useCallback(() => setThreadsVersion((v) => v + 1), []);

  if (loadError) {
    return (
      <main className="notice" data-testid="load-error">
        <p>The API did not answer: {describeError(loadError)}.</p>
        {settings.loginUrl && (
          <p>
            <a href={settings.loginUrl}>Log in</a> to use the playground with your account.
          </p>
        )}
      </main>
    );
  }
  if (assistants === null || assistantId === null) {
    return <main className="notice">Loading assistants…</main>;
  }
  return (
    <div className="layout">
      <aside>
        <label className="picker">
          Assistant
          <select
            data-testid="assistant"
            value={assistantId}
            onChange={(event) => {
              setAssistantId(event.target.value);
              setThreadId(null);
            }}
          >
            {assistants.map((assistant) => (
              <option key={assistant.assistant_id} value={assistant.graph_id}>
                {assistant.name || assistant.graph_id}
              </option>
            ))}
          </select>
        </label>
        <button type="button" data-testid="new-thread" onClick={() => setThreadId(null)}>
          New thread
        </button>
        <ThreadList client={client} current={threadId} version={threadsVersion} onOpen={openThread} />
      </aside>
      <Chat
        key={assistantId}
        settings={settings}
        assistantId={assistantId}
        threadId={threadId}
        onThreadId={setThreadId}
        onThreadsChanged={threadsChanged}
      />
    </div>
  );
}
