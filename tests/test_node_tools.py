"""The browser and JS tests' tool check: a failure in CI, a skip with the reason elsewhere."""

import pytest

from tests.node_tools import missing_tool


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_tool_fails_in_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"Chromium is not installed.*CI=true"):
        missing_tool("Chromium is not installed")


def test_missing_tool_skips_with_the_reason_elsewhere(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed; run scripts/test"):
        missing_tool("Chromium is not installed")
