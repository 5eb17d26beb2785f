"""The run engine: the only code that runs LangGraph. These names are its front door; the rest
of the project uses them and nothing else of the engine.

Where each step of a run's life is:
- queued, claimed, recovered: `queue` (the runs table is the queue; `FOR NO KEY UPDATE SKIP
  LOCKED` under a renewed lease; expired leases are reaped);
- executed: `worker` (claims, renews, obeys cancels) and `executor` (LangGraph's astream);
- streamed: `streaming` (events numbered, and for resumable runs stored), `fanout` (to this
  process's subscribers directly, to other processes through `bus`);
- finished: `finish` (the run's final status and its thread's, in one transaction);
- the checkpointer: `checkpointer` opens the savers, `checkpoints` operates on checkpoints,
  `state` reads and writes a thread's state through its graph;
- graphs: `registry` (built-ins and `langgraph.json`), `graph_schemas`, `graphs/`.
"""

from runs.engine import answers, bus
from runs.engine.answers import final_answer_of
from runs.engine.bus import send_after_commit
from runs.engine.checkpointer import close_checkpointer
from runs.engine.checkpoints import (
    acheckpoint_exists,
    acheckpoint_thread_ids,
    adelete_thread_checkpoints,
    delete_checkpoints_of_threads,
    delete_thread_checkpoints,
    orphan_checkpoint_thread_ids,
)
from runs.engine.direct import (
    DirectStart,
    reserve_direct_start,
    thread_busy_or_queue_taken,
    wake_workers_after_commit,
)
from runs.engine.embedded import ensure_embedded_worker, stop_embedded_worker
from runs.engine.errors import AssistantNotFound, CheckpointNotFound, GraphNotRegistered
from runs.engine.fanout import Subscription, subscribe_then
from runs.engine.finish import ThreadSnapshot, settle_thread, thread_status
from runs.engine.graph_schemas import graph_drawing, graph_schemas, subgraph_schemas
from runs.engine.graphs import describe_agent_model
from runs.engine.publishing import announce_listener
from runs.engine.queue import expired_runs, reap_expired
from runs.engine.registry import GraphSpec, graph_file, graph_specs, load_graph, resolve_assistant
from runs.engine.run_input import arefused_on_thread, refused_run_writes
from runs.engine.serialization import to_jsonable
from runs.engine.signals import run_ended, send_run_ended
from runs.engine.state import copy_state, get_thread_history, get_thread_state, update_state
from runs.engine.streaming import (
    expired_stream_events,
    out_of_band_events,
    publish_stream_events,
    store_stream_events,
)
from runs.engine.worker import RunWorker, run_worker_process

__all__ = [
    "AssistantNotFound",
    "CheckpointNotFound",
    "DirectStart",
    "GraphNotRegistered",
    "GraphSpec",
    "RunWorker",
    "Subscription",
    "ThreadSnapshot",
    "acheckpoint_exists",
    "acheckpoint_thread_ids",
    "adelete_thread_checkpoints",
    "announce_listener",
    "answers",
    "arefused_on_thread",
    "bus",
    "close_checkpointer",
    "copy_state",
    "delete_checkpoints_of_threads",
    "delete_thread_checkpoints",
    "describe_agent_model",
    "ensure_embedded_worker",
    "expired_runs",
    "expired_stream_events",
    "final_answer_of",
    "get_thread_history",
    "get_thread_state",
    "graph_drawing",
    "graph_file",
    "graph_schemas",
    "graph_specs",
    "load_graph",
    "orphan_checkpoint_thread_ids",
    "out_of_band_events",
    "publish_stream_events",
    "reap_expired",
    "refused_run_writes",
    "reserve_direct_start",
    "resolve_assistant",
    "run_ended",
    "run_worker_process",
    "send_after_commit",
    "send_run_ended",
    "settle_thread",
    "stop_embedded_worker",
    "store_stream_events",
    "subgraph_schemas",
    "subscribe_then",
    "thread_busy_or_queue_taken",
    "thread_status",
    "to_jsonable",
    "update_state",
    "wake_workers_after_commit",
]
