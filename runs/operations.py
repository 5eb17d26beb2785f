"""What operators see of the run queue and the workers (the staff status endpoint, the admin
index)."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from runs.models import Run, WorkerHeartbeat


def operations_status(*, now: datetime | None = None) -> dict[str, Any]:
    """The queue and the workers now::

        {"runs": {"pending": int, "running": int, "success": int, ...every status},
         "queue_depth": int,              # pending runs already due (run_at passed)
         "scheduled": int,                # pending runs not due yet (after_seconds)
         "oldest_pending_seconds": float | None,  # how long the oldest due run has waited
         "lease_seconds": float,
         "workers": [{"worker_id": str, "started_at": datetime, "seen_at": datetime,
                      "concurrency": int, "running": int}, ...]}  # seen within a lease

    Three queries: counts by status, the due pending runs (the queue index), the workers.
    """
    now = now or timezone.now()
    by_status = dict(
        Run.objects.order_by()
        .values_list("status")
        .annotate(count=Count("pk"))
        .values_list("status", "count")
    )
    due = Run.objects.filter(status=Run.Status.PENDING, run_at__lte=now).aggregate(
        depth=Count("pk"), oldest=Min("run_at")
    )
    pending = by_status.get(Run.Status.PENDING, 0)
    lease = settings.RUN_LEASE_SECONDS
    workers = WorkerHeartbeat.objects.filter(seen_at__gte=now - timedelta(seconds=lease))
    return {
        "runs": {status: by_status.get(status, 0) for status in Run.Status.values},
        "queue_depth": due["depth"],
        "scheduled": max(pending - due["depth"], 0),
        "oldest_pending_seconds": (
            (now - due["oldest"]).total_seconds() if due["oldest"] is not None else None
        ),
        "lease_seconds": lease,
        "workers": list(
            workers.order_by("worker_id").values(
                "worker_id", "started_at", "seen_at", "concurrency", "running"
            )
        ),
    }
