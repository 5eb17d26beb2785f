"""Workers' heartbeats: each worker says it is alive every third of a lease, and forgets itself
when it stops; a worker killed outright is forgotten by the others after FORGET_AFTER."""

from datetime import datetime, timedelta

from django.utils import timezone

from runs.models import WorkerHeartbeat

#: A worker unseen this long is dropped from the table (it is long gone from the status anyway).
FORGET_AFTER = timedelta(hours=1)


def record_heartbeat(
    *, worker_id: str, started_at: datetime, concurrency: int, running: int
) -> None:
    """The worker is alive now, executing `running` of at most `concurrency` runs."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "started_at": started_at,
            "seen_at": now,
            "concurrency": concurrency,
            "running": running,
        },
    )
    WorkerHeartbeat.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()


def forget_worker(*, worker_id: str) -> None:
    """The worker stopped."""
    WorkerHeartbeat.objects.filter(worker_id=worker_id).delete()
