"""README.md's examples run as written: every fenced Python and shell block, in order, against a
live server started the way `scripts/serve` starts it (only the URL differs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live import REPO_ROOT
from tests.readme_examples import README_SERVER_URL, readme_examples, run_in_terminal

README = REPO_ROOT / "README.md"
INTERPRETER = REPO_ROOT / ".venv" / "bin" / "python"  # the one the README names
MAX_SKIPPED = 2  # the blocks that start servers themselves; keep it that small
EXAMPLE_TIMEOUT = 120.0  # seconds for one block


def test_readme_has_python_and_shell_examples_and_few_skipped_ones():
    examples = readme_examples(README)
    assert {example.language for example in examples} == {"python", "shell"}
    skipped = [example for example in examples if example.skip_reason]
    assert len(skipped) <= MAX_SKIPPED, [str(example) for example in skipped]


def test_readme_python_examples_are_complete_scripts():
    for example in readme_examples(README):
        if example.language == "python":
            compile(example.code, str(example), "exec")  # no top-level await
            assert "asyncio.run(" in example.code or "await" not in example.code, example


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_readme_examples_run_as_written(live_server_factory, process_env, tmp_path: Path):
    server = live_server_factory.start(
        DEERFLOW_AUTH_MODE="local", DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION="true"
    )
    # Stopped at the end: its embedded worker would claim the runs of the tests that follow.
    try:
        for number, example in enumerate(readme_examples(README)):
            if example.skip_reason:
                continue
            code = example.code.replace(README_SERVER_URL, server.url)
            if example.language == "python":
                script = tmp_path / f"example_{number}.py"
                script.write_text(code)
                argv = [str(INTERPRETER), str(script)]
            else:
                argv = ["bash", "-euo", "pipefail", "-c", code]
            status, output = run_in_terminal(
                argv,
                cwd=REPO_ROOT,
                env=process_env,
                password="a-long-readme-password-7",
                timeout=EXAMPLE_TIMEOUT,
            )
            assert status == 0, f"{example} exited {status}:\n{code}\n--- output ---\n{output}"
    finally:
        server.stop()
