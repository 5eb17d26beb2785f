"""`manage.py reap_runs`: end the runs of dead workers (their lease expired)."""

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from deerflow_site.bridge import call_async
from runs.engine import expired_runs, reap_expired, send_run_ended
from runs.models import Run


class Command(BaseCommand):
    help = (
        "End every running run whose worker stopped renewing its lease: status error "
        "(WorkerLost), thread freed, stream ended. Live workers do this too. One line per run "
        "(the reaper's warning in the log, or on stdout when the log leaves warnings out), "
        "then the count on stdout. The reaped runs' run_ended work (webhooks, stateless "
        "threads' deletion) is done before it returns."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list the runs whose lease expired, and change nothing",
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        runs = list(expired_runs()) if dry_run else reap_expired()
        verb = "would reap" if dry_run else "reaped"
        # The reaper logs each run it ends: printing it again would say it twice.
        reaper_log = logging.getLogger(reap_expired.__module__)
        if dry_run or not reaper_log.isEnabledFor(logging.WARNING):
            for run in runs:
                self.stdout.write(
                    f"{verb} run {run.pk} of thread {run.thread_id} (worker {run.worker_id})"
                )
        self.stdout.write(f"{verb} {len(runs)} run(s)")
        if runs and not dry_run:
            call_async(_send_run_ended, runs)


async def _send_run_ended(runs: list[Run]) -> None:
    """`run_ended` for each reaped run, side by side; receivers' failures are logged."""
    await asyncio.gather(*(send_run_ended(run, sender=Command) for run in runs))
