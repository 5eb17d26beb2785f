// The page's address keeps the chosen assistant and thread, so that a reload reopens both
// (and useStream's reconnectOnMount then rejoins a run still going on that thread).

export function readLocation() {
  const params = new URLSearchParams(window.location.search);
  return { assistantId: params.get("assistant"), threadId: params.get("thread") };
}

export function writeLocation({ assistantId, threadId }) {
  const params = new URLSearchParams();
  if (assistantId) params.set("assistant", assistantId);
  if (threadId) params.set("thread", threadId);
  const query = params.toString();
  window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
}
