// A graph waiting at interrupt(): what it asks, and a form whose answer resumes it
// (Command(resume=...)); an answer that parses as JSON is sent as that value.
import { useState } from "react";

function parseAnswer(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function InterruptForm({ interrupt, onResume }) {
  const [answer, setAnswer] = useState("");
  const value = interrupt.value;
  const question = typeof value?.question === "string" ? value.question : JSON.stringify(value);
  return (
    <form
      className="interrupt"
      data-testid="interrupt"
      onSubmit={(event) => {
        event.preventDefault();
        onResume(parseAnswer(answer));
      }}
    >
      <p data-testid="interrupt-question">{question}</p>
      <input
        data-testid="interrupt-answer"
        value={answer}
        placeholder="Your answer"
        onChange={(event) => setAnswer(event.target.value)}
      />
      <button type="submit" data-testid="resume">
        Resume
      </button>
    </form>
  );
}
