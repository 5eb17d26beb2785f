"""Signals the engine sends, for the rest of the project to act on without the engine knowing it.

- `run_ended(sender=RunWorker, run=Run)`: a worker finished executing a run (whatever its
  outcome, also when the run was lost); sent from the worker's event loop with `asend_robust`,
  off the run's path. The runs app sends the run's webhook and deletes a stateless run's thread
  on it (`runs.after_run`).
"""

from django.dispatch import Signal

run_ended = Signal()
