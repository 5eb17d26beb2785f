"""The bench's report: ratios between servers, the targets of issue 13, and the printed table.

`results` maps a server name to what run.measure returned for it (or {"error": ...} /
{"skipped": ...}). Nothing here measures; it only reads those dicts.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

PEERS = ("reference", "aegra")
#: Our embedded default: the split layout's CPU per run is held against it.
EMBEDDED_DEFAULT = "ours-sqlite"
#: The stack's floor (bench/floor_app.py): not a peer; no server of this stack costs less.
FLOOR = "floor"
#: The floor with the least durable record of each thread and run (FLOOR_DURABLE=1).
DURABLE_FLOOR = "floor-durable"
FLOORS = (FLOOR, DURABLE_FLOOR)


def _get(result: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def _usable(result: dict[str, Any] | None) -> bool:
    return bool(result) and "error" not in result and "skipped" not in result


def ratios(results: dict[str, Any], name: str) -> dict[str, dict[str, float]]:
    """Ours / each peer's runs per second at every concurrency level both measured."""
    out: dict[str, dict[str, float]] = {}
    for peer in PEERS:
        if not _usable(results.get(peer)):
            continue
        entry = {}
        for level, measured in results[name].get("create_wait", {}).items():
            theirs = _get(results[peer], "create_wait", level, "runs_per_second")
            ours = measured.get("runs_per_second")
            if theirs and ours is not None:
                entry[f"runs_per_second_c{level}"] = round(ours / theirs, 2)
        out[peer] = entry
    return out


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours is not None and theirs else None


def _streams_kb(result: dict[str, Any], level: str) -> float | None:
    """KB per stream at `level`, only when every stream heartbeated in the window."""
    measured = _get(result, "streams", "levels", level) or {}
    if measured.get("heartbeat_in_window") != int(level):
        return None
    return measured.get("kb_per_stream")


def _chat_vs_reference(key: str) -> Callable[[dict[str, Any], dict[str, Any]], float | None]:
    return lambda results, ours: _ratio(
        _get(ours, "chat", key), _get(results.get("reference") or {}, "chat", key)
    )


def _ahead_everywhere(results: dict[str, Any], ours: dict[str, Any]) -> float | None:
    """The smallest ours/peer runs/s ratio over every level and peer measured."""
    found = [v for entry in ours.get("_ratios", {}).values() for v in entry.values()]
    return min(found) if found else None


def _split_vs_default(results: dict[str, Any], ours: dict[str, Any]) -> float | None:
    default = results.get(EMBEDDED_DEFAULT) or {}
    key = ("create_wait", "32", "server_cpu_ms_per_run")
    return _ratio(_get(ours, *key), _get(default, *key))


#: Issue 13's targets: key -> (what, how the value is read, comparison, bound, which servers).
TARGETS: dict[str, tuple[str, Callable[..., Any], Callable[[Any, Any], bool], float, str]] = {
    "rps_c32_vs_reference": (
        "runs/s at c=32, ours / reference",
        lambda results, ours: _get(ours, "_ratios", "reference", "runs_per_second_c32"),
        operator.ge, 1.5, "all",
    ),
    "rps_ahead_of_peers_everywhere": (
        "smallest runs/s ratio to the reference and Aegra over c=1, 8, 32, 64",
        _ahead_everywhere, operator.gt, 1.0, "all",
    ),
    "cpu_ms_per_run_c32": (
        "server CPU ms per create+wait run at c=32",
        lambda results, ours: _get(ours, "create_wait", "32", "server_cpu_ms_per_run"),
        operator.le, 6.0, "all",
    ),
    "thread_create_p50_ms": (
        "POST /threads p50 ms",
        lambda results, ours: _get(ours, "threads", "p50_ms"), operator.le, 3.0, "all",
    ),
    "create_wait_p50_ms_c1": (
        "create+wait p50 ms at c=1",
        lambda results, ours: _get(ours, "create_wait", "1", "p50_ms"), operator.le, 12.0, "all",
    ),
    "first_event_p50_ms": (
        "first SSE event p50 ms",
        lambda results, ours: _get(ours, "sse", "first_event", "p50_ms"),
        operator.le, 5.0, "all",
    ),
    "chat_cpu_per_run_vs_reference": (
        "realistic run: server CPU per run, ours / reference",
        _chat_vs_reference("server_cpu_ms_per_run"), operator.le, 1.0, "all",
    ),
    "chat_cpu_per_event_vs_reference": (
        "realistic run: server CPU per streamed event, ours / reference",
        _chat_vs_reference("server_cpu_us_per_event"), operator.le, 1.0, "all",
    ),
    "kb_per_stream_10000": (
        "KB per idle stream with 10,000 open, all heartbeating",
        lambda results, ours: _streams_kb(ours, "10000"), operator.le, 40.0, "all",
    ),
    "idle_cpu_percent_2000": (
        "server CPU % of a core with 2,000 idle streams",
        lambda results, ours: _get(ours, "streams", "levels", "2000", "idle_cpu_percent"),
        operator.lt, 5.0, "all",
    ),
    "split_cpu_per_run_vs_default": (
        f"CPU per run at c=32 / {EMBEDDED_DEFAULT}'s",
        _split_vs_default, operator.le, 1.5, "split",
    ),
}  # fmt: skip


def above_floor(results: dict[str, Any], name: str, floor_name: str = FLOOR) -> dict[str, float]:
    """Ours against the stack's floor (`floor_name`: the `floor` or `floor-durable` server,
    bench/floor_app.py), per level both measured: server CPU ms per create+wait run, ours / the
    floor's and ours minus the floor's.

    Shape: {"cpu_ratio_cN": x, "cpu_ms_above_cN": ms}; empty without a usable floor."""
    if not _usable(results.get(floor_name)):
        return {}
    out: dict[str, float] = {}
    for level, measured in results[name].get("create_wait", {}).items():
        floor = _get(results[floor_name], "create_wait", level, "server_cpu_ms_per_run")
        ours = measured.get("server_cpu_ms_per_run")
        if floor and ours is not None:
            out[f"cpu_ratio_c{level}"] = round(ours / floor, 2)
            out[f"cpu_ms_above_c{level}"] = round(ours - floor, 2)
    return out


def comparison(results: dict[str, Any]) -> dict[str, Any]:
    """For each of our servers measured: its runs/s ratios to each peer, its CPU per run against
    the stack's floor, and each target's check.

    Shape: {name: {"ratios": {peer: {"runs_per_second_cN": x}}, "floor": {see above_floor},
    "durable_floor": {the same against `floor-durable`},
    "targets": {key: {"value", "target", "met"}}}}; "met" is None when the value was not
    measured.
    """
    out: dict[str, Any] = {}
    for name, result in results.items():
        if name in PEERS or name in FLOORS or not _usable(result):
            continue
        entry: dict[str, Any] = {
            "ratios": ratios(results, name),
            "floor": above_floor(results, name),
            "durable_floor": above_floor(results, name, DURABLE_FLOOR),
            "targets": {},
        }
        view = {**result, "_ratios": entry["ratios"]}
        for key, (_what, read, compare, bound, applies) in TARGETS.items():
            if applies == "split" and "split" not in name:
                continue
            value = read(results, view)
            met = None if value is None else compare(value, bound)
            entry["targets"][key] = {"value": value, "target": bound, "met": met}
        out[name] = entry
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _rows(results: dict[str, Any], levels: list[str], stream_levels: list[str]) -> list[tuple]:
    """(label, path into a server's result) for each printed row."""
    rows: list[tuple] = []
    for lv in levels:
        rows += [
            (f"runs/s create+wait c={lv}", ("create_wait", lv, "runs_per_second")),
            (f"  p50 ms c={lv}", ("create_wait", lv, "p50_ms")),
            (f"  p95 ms c={lv}", ("create_wait", lv, "p95_ms")),
            (f"  errors c={lv}", ("create_wait", lv, "errors")),
            (f"  server CPU ms/run c={lv}", ("create_wait", lv, "server_cpu_ms_per_run")),
            (f"    web processes c={lv}", ("create_wait", lv, "server_cpu_ms_per_run_web")),
            (f"    workers c={lv}", ("create_wait", lv, "server_cpu_ms_per_run_worker")),
        ]
    rows += [
        ("POST /threads p50 ms", ("threads", "p50_ms")),
        ("POST /threads p95 ms", ("threads", "p95_ms")),
        ("  server CPU ms/thread", ("threads", "server_cpu_ms_per_thread")),
        ("first SSE event p50 ms", ("sse", "first_event", "p50_ms")),
        ("first SSE event p95 ms", ("sse", "first_event", "p95_ms")),
        ("first values event p50 ms", ("sse", "first_values", "p50_ms")),
        ("first values event p95 ms", ("sse", "first_values", "p95_ms")),
        ("chat runs", ("chat", "runs")),
        ("  chat errors", ("chat", "errors")),
        ("  chat runs/s", ("chat", "runs_per_second")),
        ("  messages events/run", ("chat", "events_per_run", "messages")),
        ("  values events/run", ("chat", "events_per_run", "values")),
        ("  first message p50 ms", ("chat", "first_message", "p50_ms")),
        ("  run p50 ms", ("chat", "run", "p50_ms")),
        ("  server CPU ms/run", ("chat", "server_cpu_ms_per_run")),
        ("  server CPU us/event", ("chat", "server_cpu_us_per_event")),
        ("idle RSS MB", ("streams", "idle_rss_mb")),
        ("idle OS threads", ("streams", "idle_os_threads")),
    ]
    for lv in stream_levels:
        rows += [
            (f"streams held, of {lv}", ("streams", "levels", lv, "streams")),
            (f"  RSS MB, {lv}", ("streams", "levels", lv, "rss_mb")),
            (f"  KB/stream, {lv}", ("streams", "levels", lv, "kb_per_stream")),
            (f"  OS threads, {lv}", ("streams", "levels", lv, "os_threads")),
            (f"  server CPU % with {lv} open", ("streams", "levels", lv, "idle_cpu_percent")),
            (f"  heartbeating/{lv}", ("streams", "levels", lv, "heartbeat_in_window")),
            (f"  seconds to open {lv}", ("streams", "levels", lv, "open_seconds")),
            (
                f"  server CPU % opening {lv}",
                ("streams", "levels", lv, "server_cpu_percent_opening"),
            ),
            (
                f"  load generator CPU % opening {lv}",
                ("streams", "levels", lv, "load_generator_cpu_percent_opening"),
            ),
        ]
    return rows


def table(
    results: dict[str, Any],
    compared: dict[str, Any],
    names: list[str],
    levels: list[str],
    stream_levels: list[str],
) -> str:
    """The side-by-side table, then each of our servers' ratios and targets."""
    names = [n for n in names if n in results]
    grid: list[list[str]] = [["metric", *names]]
    for label, path in _rows(results, levels, stream_levels):
        cells = [fmt(_get(results[n], *path)) for n in names]
        if any(cell != "-" for cell in cells):  # a phase not run shows no rows
            grid.append([label, *cells])
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in grid
    ]
    lines.insert(1, "-" * len(lines[0]))
    for name in names:
        reason = results[name].get("skipped") or results[name].get("error")
        if reason:
            kind = "SKIPPED" if "skipped" in results[name] else "FAILED"
            lines.append(f"\n{name}: {kind}: {reason}")
    for name, entry in compared.items():
        for peer, found in entry["ratios"].items():
            shown = ", ".join(f"{k} {v}x" for k, v in found.items())
            lines.append(f"\n{name} / {peer}: {shown or '-'}")
        for key, floor_name in (("floor", "the stack's floor"), ("durable_floor", DURABLE_FLOOR)):
            if entry.get(key):
                shown = ", ".join(f"{k} {v}" for k, v in entry[key].items())
                lines.append(f"\n{name} against {floor_name}: {shown}")
        lines.append(f"{name}, issue 13 targets:")
        for key, check in entry["targets"].items():
            verdict = {True: "MET", False: "MISSED", None: "not measured"}[check["met"]]
            lines.append(
                f"  {TARGETS[key][0]}: {fmt(check['value'], 2)} "
                f"(target {check['target']}) {verdict}"
            )
    return "\n".join(lines)
