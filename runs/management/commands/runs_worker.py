"""`manage.py runs_worker`: a dedicated run worker process."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from deerflow_site.setting_values import command_option
from runs.engine import run_worker_process


class Command(BaseCommand):
    help = (
        "Claim and execute pending runs until SIGTERM/SIGINT; then let running runs finish "
        "(up to DEERFLOW_WORKER_SHUTDOWN_SECONDS) and end the rest with an error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.WORKER_CONCURRENCY,
            help="runs executed at once (default: DEERFLOW_WORKER_CONCURRENCY)",
        )

    def handle(self, *args: Any, concurrency: int, **options: Any) -> None:
        # Checked as DEERFLOW_WORKER_CONCURRENCY is (the option's default, so never None).
        checked = command_option("--concurrency", concurrency, whole=True, minimum=1)
        run_worker_process(concurrency=int(checked or concurrency))
