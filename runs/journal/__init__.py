"""The run journal (deer-flow's run event store): what every run did, in order, per thread.

`catalog` names the event types, `store` writes events under a per-thread `seq`, `selectors`
reads the chat history pages and token usage, `views` serves them.
"""
