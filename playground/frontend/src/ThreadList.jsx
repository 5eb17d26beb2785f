// The user's threads, newest first; opening one shows its history in the chat. The search
// selects only what the list shows: a thread's values (its whole conversation) stay on the server.
import { useEffect, useState } from "react";

import { describeError } from "./api.js";

const THREAD_LIMIT = 50;
export const THREAD_FIELDS = ["thread_id", "status", "metadata"];

// The title the chat gave the thread at its first message (Chat.jsx), else its graph.
function threadTitle(thread) {
  return thread.metadata?.title || thread.metadata?.graph_id || thread.thread_id;
}

export function ThreadList({ client, current, version, onOpen }) {
  const [threads, setThreads] = useState([]);
  const [error, setError] = useState(null);

  useEffect(() => {
    let live = true;
    client.threads
      .search({ limit: THREAD_LIMIT, sortBy: "updated_at", sortOrder: "desc", select: THREAD_FIELDS })
      .then((found) => live && (setThreads(found), setError(null)))
      .catch((failure) => live && setError(failure));
    return () => {
      live = false;
    };
  }, [client, version, current]);

  return (
    <nav data-testid="threads">
      <h2>Threads</h2>
      {error && <p className="error">{describeError(error)}</p>}
      <ul>
        {threads.map((thread) => (
          <li key={thread.thread_id}>
            <button
              type="button"
              data-testid="thread-item"
              data-thread-id={thread.thread_id}
              className={thread.thread_id === current ? "current" : undefined}
              onClick={() => onOpen(thread.thread_id)}
            >
              <span className="title">{threadTitle(thread)}</span>
              <span className="status">{thread.status}</span>
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}
