"""`manage.py cleanup`: delete what is past its retention (runs.retention.clear_expired)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

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
            "--run-days",
            type=float,
            help="delete finished runs that ended more than this many days ago "
            "(default: DEERFLOW_RUN_RETENTION_DAYS; 0 keeps them)",
        )
        parser.add_argument(
            "--stream-seconds",
            type=float,
            help="delete stored stream events of runs that ended more than this many seconds "
            "ago (default: DEERFLOW_STREAM_RETENTION_SECONDS)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            help="rows per transaction (default: DEERFLOW_CLEANUP_BATCH_SIZE)",
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool,
        run_days: float | None,
        stream_seconds: float | None,
        batch_size: int | None,
        **options: Any,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if any(value is not None and value < 0 for value in (run_days, stream_seconds)):
            raise CommandError("--run-days and --stream-seconds must not be negative")
        retention = Retention.from_settings(
            run_days=run_days, stream_seconds=stream_seconds, batch_size=batch_size
        )
        counts = clear_expired(retention=retention, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for kind, count in counts.items():
            self.stdout.write(f"{verb} {count} {kind}")
