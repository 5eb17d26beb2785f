"""The final answer of `/wait` and `/join`, and its hand-over within one process.

The answer is the thread's values after the run (with `__interrupt__`: the pending interrupts,
when the run stopped at `interrupt()`), or the run's error. A request waiting for a run says so
(`expect`) before the run can end; when the run ends in the same process, its end leaves the
answer it has just committed (`offer`), and the request takes it (`take`) instead of reading the
run and its thread back from the database. A run that ends in another process sends its answer
with its `end` to those who wait for it (`bus.run_end_group`, `layer_answer`), and a request
waiting here takes it from there (`arrived`). A run that ended before the request waited, or
without a snapshot of its thread, or whose answer is larger than LAYER_ANSWER_MAX_BYTES, leaves
nothing: the request reads the database (`runs.selectors.final_answer`), as every request did
before.

Answers are kept as the response's body: JSON, UTF-8 (`encode`).
"""

import threading
from typing import Any
from uuid import UUID

from deerflow_site.dbcompat import jsonb_storable
from runs.engine.serialization import dumps
from runs.models import Run

#: What `take` returns when no answer was left.
MISSING: Any = object()
#: The largest answer sent with a run's `end` through the channel layer (bytes of JSON); a
#: larger one is read from the database by the request.
LAYER_ANSWER_MAX_BYTES = 256 * 1024

_lock = threading.Lock()
#: Run id → how many requests of this process wait for its answer.
_waiting: dict[str, int] = {}
#: Run id → its answer, left by its end for the requests waiting.
_answers: dict[str, bytes] = {}


def encode(answer: Any) -> bytes:
    """An answer as the response's body: compact JSON, UTF-8 (`serialization.dumps`: whatever
    the graph's values hold, NaN or nesting a thousand deep, it never raises)."""
    return dumps(answer).encode()


def final_answer_of(*, status: str, error: Any, values: Any, interrupts: Any) -> Any:
    """What `/wait` and `/join` return for a run that ended with `status` and `error`, its thread
    holding `values` and `interrupts` (task id → [{id, value}]) as stored: its values, or its
    error (`{"__error__": {error, message}}`) when it failed."""
    if status == Run.Status.ERROR:
        return {"__error__": error or {"error": "Error", "message": "The run failed."}}
    values = values if values is not None else {}
    pending = [item for items in (interrupts or {}).values() for item in items]
    if pending and isinstance(values, dict):
        values = {**values, "__interrupt__": pending}
    return values


def expect(run_id: UUID | str) -> None:
    """A request of this process waits for the run's answer (call `forget` when done)."""
    key = str(run_id)
    with _lock:
        _waiting[key] = _waiting.get(key, 0) + 1


def forget(run_id: UUID | str) -> None:
    """The request that called `expect` no longer waits; the answer goes with the last one."""
    key = str(run_id)
    with _lock:
        count = _waiting.get(key, 0) - 1
        if count > 0:
            _waiting[key] = count
        else:
            _waiting.pop(key, None)
            _answers.pop(key, None)


def is_expected(run_id: UUID | str) -> bool:
    """Whether a request of this process waits for the run's answer."""
    return str(run_id) in _waiting


def offer(
    run_id: UUID | str, *, status: str, error: Any, values: Any, interrupts: dict[str, Any]
) -> None:
    """Leave the answer of a run whose end was just committed with these values (as the thread
    row stores them: `jsonb_storable` applied here) for the requests that wait for it; nothing
    when none does."""
    key = str(run_id)
    if key not in _waiting:
        return
    arrived(key, _encoded(status=status, error=error, values=values, interrupts=interrupts))


def _encoded(*, status: str, error: Any, values: Any, interrupts: dict[str, Any]) -> bytes:
    answer = final_answer_of(
        status=status,
        error=error,
        values=jsonb_storable(values),
        interrupts=jsonb_storable(interrupts),
    )
    return encode(answer)


def layer_answer(
    *, status: str, error: Any, values: Any, interrupts: dict[str, Any]
) -> bytes | None:
    """The answer `offer` would leave, encoded, for a run's `end` on the channel layer; None
    when it is larger than LAYER_ANSWER_MAX_BYTES (the requests then read the database)."""
    body = _encoded(status=status, error=error, values=values, interrupts=interrupts)
    return body if len(body) <= LAYER_ANSWER_MAX_BYTES else None


def arrived(run_id: UUID | str, body: bytes) -> None:
    """Keep an encoded answer for the requests of this process that wait for the run (nothing
    when none does): one the run's end left here, or one its `end` brought."""
    key = str(run_id)
    with _lock:
        if key in _waiting:
            _answers[key] = body


def take(run_id: UUID | str) -> bytes:
    """The answer (the response's body) the run's end left in this process, or MISSING."""
    return _answers.get(str(run_id), MISSING)
