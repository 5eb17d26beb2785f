"""What the server's log lines carry: the run, thread and worker they are about.

A worker binds its id for everything it does (`bind_worker`), and each run's task binds the run and
its thread (`bind_run`); `RunContextFilter`, on the handler, copies them onto every record logged
meanwhile, so a line about a run says which one without each message repeating it. A line logged
elsewhere about a run passes them explicitly: `logger.info(..., extra=run_fields(run))`.
With DEERFLOW_LOG_FORMAT=json, python-json-logger's formatter writes each record as one JSON
object per line, these fields included. `logging_config` is the LOGGING setting that sets this up.
"""

import logging
from contextvars import ContextVar
from typing import Any

#: The fields a line about a run carries.
RUN_FIELDS = ("run_id", "thread_id", "worker_id")

_run: ContextVar[dict[str, str] | None] = ContextVar("deerflow_log_run", default=None)
_worker: ContextVar[str | None] = ContextVar("deerflow_log_worker", default=None)


def bind_worker(worker_id: str) -> None:
    """Lines logged from now on in this task, and the tasks it creates, name this worker."""
    _worker.set(worker_id)


def bind_run(*, run_id: Any, thread_id: Any) -> None:
    """Lines logged from now on in this task, and the tasks it creates, name this run."""
    _run.set({"run_id": str(run_id), "thread_id": str(thread_id)})


def run_fields(run: Any) -> dict[str, str]:
    """`extra=` for a line about `run` (a Run) logged outside its task."""
    fields = {"run_id": str(run.pk), "thread_id": str(run.thread_id)}
    if getattr(run, "worker_id", ""):
        fields["worker_id"] = run.worker_id
    return fields


class RunContextFilter(logging.Filter):
    """Adds `run_id`, `thread_id` and `worker_id` bound in the current context to a record
    (never replacing what `extra=` gave)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = dict(_run.get() or {})
        worker_id = _worker.get()
        if worker_id:
            bound.setdefault("worker_id", worker_id)
        for name, value in bound.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """The LOGGING setting: this project's loggers at `level` (a logging level's name), the
    others at WARNING (django.request at ERROR), on one console handler writing `log_format`
    ("text" or "json", one JSON object per line) with RunContextFilter's fields."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"run_context": {"()": "deerflow_site.logs.RunContextFilter"}},
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["run_context"],
            }
        },
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            **{
                app: {"handlers": ["console"], "level": level, "propagate": False}
                for app in ("deerflow_site", "threads", "runs", "feedback")
            },
            "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        },
    }
