"""Node.js and headless Chromium for the tests: the official JS SDK and the playground in a browser.

Why playwright-core driven from node scripts, not Selenium: the JS SDK tests need Node.js and the
npm packages anyway, so one toolchain serves both; playwright-core drives the system's Chromium
with no driver binary whose version must match the browser's, and its locators wait on conditions
(a selector showing, a text appearing) instead of sleeps.

The scripts are node:test files under tests/js/. `run_node_tests(script, ...)` runs one (or the
tests of it that match a name) and fails the pytest test with node's output when one fails. What a
script needs comes in environment variables: `DEERFLOW_URL` (the server's root), `DEERFLOW_API_URL`,
`DEERFLOW_API_KEY` and, for browser scripts, `CHROMIUM_PATH` (tests/js/browser.mjs launches it).

A browser test of your own (the playground's is tests/test_playground_browser.py):

    // tests/js/admin.test.mjs
    import { test } from "node:test";
    import { withPage } from "./browser.mjs";
    test("the admin lists runs", async () => {
      await withPage(async (page) => {
        await page.goto(`${process.env.DEERFLOW_URL}/admin/`);
        await page.getByText("Runs").waitFor();   // waits on the condition, no sleep
      });
    });

    # tests/test_admin_browser.py, marked django_db(transaction=True) and live
    def test_admin_lists_runs(run_browser_tests, daphne_server):
        run_browser_tests("admin.test.mjs", daphne_server, name="the admin lists runs")

Missing tools: with CI=true a failure; elsewhere the test is skipped with the reason
(`scripts/test` installs them: Debian's chromium as root, and `scripts/setup --node`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

from scripts.cluster import die_with_parent
from tests.live import REPO_ROOT, LiveServer, merge_env

JS_TESTS_DIR = REPO_ROOT / "tests" / "js"
NODE_MODULES = REPO_ROOT / "node_modules"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
NODE_TEST_TIMEOUT = 300.0  # seconds, for one script; its own steps wait on conditions
MIN_NODE_MAJOR = 20  # playwright-core and @langchain/core need it
NOTHING_RAN = "\N{INFORMATION SOURCE} pass 0\n"  # the spec reporter's count when no test matched


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1"}


def missing_tool(reason: str) -> None:
    """Fail under CI, skip elsewhere: the browser and JS tests must run where CI runs."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: the browser and JS client tests must run)")
    pytest.skip(f"{reason}; run scripts/test (as root it installs Chromium) to include it")


def _node_problem() -> str | None:
    """Why Node.js and the locked npm packages cannot be used, or None."""
    node = shutil.which("node")
    if node is None:
        return "Node.js is not installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        return f"Node.js {MIN_NODE_MAJOR}+ is needed, found {version.stdout.strip() or 'none'}"
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    for name in lock["packages"][""].get("devDependencies", {}) | lock["packages"][""].get(
        "dependencies", {}
    ):
        if not (NODE_MODULES / name / "package.json").is_file():
            return f"the npm package {name} is not installed (run scripts/setup --node)"
    return None


@pytest.fixture(scope="session")
def node_executable() -> str:
    """The `node` to run tests/js scripts with, once the locked npm packages are installed."""
    problem = _node_problem()
    if problem:
        missing_tool(problem)
    return shutil.which("node")  # type: ignore[return-value]


@pytest.fixture(scope="session")
def chromium_path(node_executable: str) -> str:
    """Debian's Chromium, for playwright-core (tests/js/browser.mjs)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    missing_tool("Chromium is not installed (Debian: apt-get install chromium)")
    raise AssertionError("unreachable")


RunNodeTests = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_node_tests(node_executable: str) -> RunNodeTests:
    """Run a node:test script of tests/js: `run_node_tests("sdk_client.test.mjs", env={...},
    name="joinStream")`; `name` is a regular expression of the node tests to run.

    Fails the pytest test, with node's output, unless every selected node test passed and at least
    one ran. Returns the CompletedProcess.
    """

    def run(
        script: str,
        *,
        env: dict[str, str | None] | None = None,
        name: str | None = None,
        timeout: float = NODE_TEST_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        command = [node_executable, "--test", "--test-reporter=spec"]
        if name is not None:
            command.append(f"--test-name-pattern={name}")
        command.append(str(JS_TESTS_DIR / script))
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=merge_env(dict(os.environ), {"NODE_NO_WARNINGS": "1", **(env or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=die_with_parent,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0 or NOTHING_RAN in output:
            pytest.fail(f"node --test {script} (name={name!r}) failed:\n{output[-20000:]}")
        return result

    return run


@pytest.fixture
def run_browser_tests(run_node_tests: RunNodeTests, chromium_path: str) -> RunNodeTests:
    """Run a browser script of tests/js against a live server:
    `run_browser_tests("playground.test.mjs", server, name="Stop", SOME_VAR="...")`.

    The script gets DEERFLOW_URL (the server's root), DEERFLOW_API_PREFIX, CHROMIUM_PATH and the
    keyword arguments as environment variables; `name` selects node tests as in run_node_tests.
    """

    def run(
        script: str, server: LiveServer, *, name: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "DEERFLOW_URL": server.url,
            "DEERFLOW_API_PREFIX": server.api_url.removeprefix(server.url),
            "CHROMIUM_PATH": chromium_path,
            **env,
        }
        return run_node_tests(script, env=env, name=name)

    return run
