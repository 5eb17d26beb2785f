"""The fenced examples of README.md, and a terminal to run them in (for tests/test_readme.py)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

#: The URL the README's examples use, replaced by the live server's in the test.
README_SERVER_URL = "http://127.0.0.1:8000"
#: Put on the line before a fence: that block is not run, for the reason in parentheses.
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
LANGUAGES = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell"}
PASSWORD_PROMPT = re.compile(rb"Password[^\n]*: ?$")


@dataclass(frozen=True)
class Example:
    """One fenced block: its language ("python" or "shell"), code and first line (1-based)."""

    language: str
    code: str
    line: int
    skip_reason: str | None

    def __str__(self) -> str:
        return f"README.md line {self.line} ({self.language})"


def readme_examples(readme: Path) -> list[Example]:
    """Every fenced Python and shell block of `readme`, in document order."""
    text = readme.read_text()
    examples = []
    for match in FENCE.finditer(text):
        language = LANGUAGES.get(match["lang"].lower())
        if language is None:
            continue
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        skip = SKIP_MARKER.search(before)
        examples.append(
            Example(
                language=language,
                code=match["code"],
                line=text.count("\n", 0, match.start()) + 1,
                skip_reason=skip["reason"] if skip else None,
            )
        )
    return examples


def run_in_terminal(
    argv: list[str], *, cwd: Path, env: dict[str, str], password: str, timeout: float
) -> tuple[int, str]:
    """Run argv in a pseudo-terminal, as a user at a shell would, answering every password prompt
    with `password`. Returns (exit code, what it printed); a run past `timeout` seconds is killed
    (exit code -9)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        try:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    output = bytearray()
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if PASSWORD_PROMPT.search(bytes(output[answered:])):
                os.write(fd, password.encode() + b"\n")
                answered = len(output)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")
