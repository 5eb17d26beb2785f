// Messages as they stream: human and AI turns, each AI tool call with the tool's result.

function textOf(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((block) => (typeof block === "string" ? block : block?.text ?? "")).join("");
}

function ToolCall({ call, result }) {
  return (
    <div className="tool-call" data-testid="tool-call" data-name={call.name}>
      <div className="call">
        tool {call.name}({JSON.stringify(call.args ?? {})})
      </div>
      {result ? (
        <div className="result" data-testid="tool-result">
          → {textOf(result.content)}
        </div>
      ) : (
        <div className="result pending">…</div>
      )}
    </div>
  );
}

export function MessageList({ messages }) {
  const results = new Map(
    messages.filter((message) => message.type === "tool").map((message) => [message.tool_call_id, message]),
  );
  return (
    <ol className="messages" data-testid="messages">
      {messages
        .filter((message) => message.type !== "tool")
        .map((message, index) => (
          <li key={message.id ?? index} className={message.type} data-testid="message" data-type={message.type}>
            {textOf(message.content) && <div className="text">{textOf(message.content)}</div>}
            {(message.tool_calls ?? []).map((call, callIndex) => (
              <ToolCall key={call.id ?? callIndex} call={call} result={results.get(call.id)} />
            ))}
          </li>
        ))}
    </ol>
  );
}
