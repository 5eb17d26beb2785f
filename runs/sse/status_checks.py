"""Whether a run has ended, as the database says: one look per run for all of this process's
streams, waits and joins of that run.

Idle streams look now and then in case the run's `end` was lost on the bus. Each used to query
the run itself, so 2,000 streams of ten runs made 1,000 queries a check period; now the answer
is shared by run, and at most one query per run is in flight.
"""

import time
from dataclasses import dataclass
from uuid import UUID

from deerflow_site.bridge import Executor, call_sync
from runs import selectors
from runs.models import Run

#: Past this many remembered runs, answers older than FORGET_SECONDS are forgotten.
REMEMBERED_RUNS = 1024
FORGET_SECONDS = 300.0


@dataclass(slots=True)
class _Answer:
    at: float  # time.monotonic() of the query
    ended: bool
    querying: bool = False


_answers: dict[UUID, _Answer] = {}


async def run_has_ended(run_id: UUID, *, max_age: float) -> bool:
    """Whether the run is no longer pending or running (or is gone), from a query at most
    `max_age` seconds old. While another caller's query of the run is in flight, its previous
    answer (none: not ended) stands. Raises what the database raises."""
    now = time.monotonic()
    answer = _answers.get(run_id)
    if answer is not None and (answer.querying or now - answer.at <= max_age):
        return answer.ended
    if answer is None:
        _forget_old(now)
        answer = _answers[run_id] = _Answer(at=now, ended=False)
    answer.querying = True
    try:
        status = await call_sync(selectors.run_status, run_id=run_id, on=Executor.API)
    finally:
        answer.querying = False
    answer.at = time.monotonic()
    answer.ended = status not in Run.ACTIVE_STATUSES
    return answer.ended


def _forget_old(now: float) -> None:
    if len(_answers) < REMEMBERED_RUNS:
        return
    for run_id in [k for k, a in _answers.items() if now - a.at > FORGET_SECONDS]:
        del _answers[run_id]
