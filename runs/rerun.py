"""Re-running a finished run: the same request again, as a new run on its thread."""

from typing import Any

from runs.admission import RunRequest, admit_run
from runs.exceptions import RunActive
from runs.models import Run
from threads.exceptions import ThreadNotFound


def rerun_run(*, run: Run) -> Run:
    """A new pending run on the run's thread with the run's assistant, input and options, on
    behalf of the run's user (whose rights on the thread admission checks), queued behind any
    active run of the thread (`enqueue`); no webhook is called again.

    Raises RunActive (409) while the run itself is pending or running, ThreadNotFound (404)
    when its user is gone or may no longer use the thread.
    """
    if run.is_active:
        raise RunActive()
    if run.user is None:
        raise ThreadNotFound()
    kwargs: dict[str, Any] = {**run.kwargs, "webhook": None, "on_disconnect": "continue"}
    request = RunRequest(
        assistant_id=str(run.assistant_id),
        metadata=dict(run.metadata),
        multitask_strategy=Run.MultitaskStrategy.ENQUEUE,
        if_not_exists="reject",
        on_disconnect="continue",
        on_completion=run.on_completion,
        after_seconds=0.0,
        resumable=run.resumable,
        checkpoint_id=kwargs.get("checkpoint_id"),
        checkpoint=kwargs.get("checkpoint"),
        kwargs={**kwargs, "after_seconds": 0.0},
    )
    return admit_run(user=run.user, thread_id=run.thread_id, request=request)
