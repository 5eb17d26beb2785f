"""Server-sent events: the frame format, one run's stream, a thread's stream, and waiting on a run.

- `frames`: the bytes of an SSE event, the event filter of stream modes, the response;
- `run_stream`: one run's events (replay after `Last-Event-ID`, then live, de-duplicated by id);
- `thread_stream`: every run of a thread as it comes (`GET /threads/{t}/stream`);
- `access`: a viewer's right to view the thread, read again while a stream goes on;
- `waiting`: heartbeats until a run ends (wait, join, cancel with `?wait=1`).

Subscriptions to the bus are `runs.engine.Subscription`; a stream view opens one before it could
miss anything.
"""
