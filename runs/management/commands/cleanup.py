"""`manage.py cleanup`: delete what is past its retention (runs.retention.clear_expired)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from deerflow_site.setting_values import MAX_DAYS, MAX_SECONDS, command_option
from runs.retention import Retention, clear_expired


class Command(BaseCommand):
    help = (
        "Delete threads past their TTL (with their runs, events, feedback and checkpoints), "
        "finished runs older than the run retention, stored stream events past the stream "
        "retention and checkpoints whose thread is gone; in batches, each its own transaction. "
        "Active runs and busy threads are never touched. Prints the rows deleted per kind."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print what would be deleted, and change nothing",
        )
        parser.add_argument(
            "--run-days",  # text: command_option checks it as the setting is
            help="delete finished runs that ended more than this many days ago "
            "(default: DEERFLOW_RUN_RETENTION_DAYS; 0 keeps them)",
        )
        parser.add_argument(
            "--stream-seconds",
            help="delete stored stream events of runs that ended more than this many seconds "
            "ago (default: DEERFLOW_STREAM_RETENTION_SECONDS)",
        )
        parser.add_argument(
            "--batch-size",
            help="rows per transaction (default: DEERFLOW_CLEANUP_BATCH_SIZE)",
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool,
        run_days: str | float | None,
        stream_seconds: str | float | None,
        batch_size: str | int | None,
        **options: Any,
    ) -> None:
        # Checked as the settings they override are: a value no date or LIMIT can hold is
        # refused here, not a traceback from the first query.
        retention = Retention.from_settings(
            run_days=command_option("--run-days", run_days, maximum=MAX_DAYS),
            stream_seconds=command_option("--stream-seconds", stream_seconds, maximum=MAX_SECONDS),
            batch_size=command_option("--batch-size", batch_size, whole=True, minimum=1),
        )
        counts = clear_expired(retention=retention, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for kind, count in counts.items():
            self.stdout.write(f"{verb} {count} {kind}")
