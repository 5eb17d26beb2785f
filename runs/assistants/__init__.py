"""Assistants: one per registered graph, read-only, shaped like the SDK's `Assistant`.

The graph registry (`runs.engine`) is the only source of assistants; creating, changing or
deleting one through the API is refused with a 405 that says so.

- `selectors`: the assistants of the registry, searched and shaped;
- `serializers`: the request bodies and queries;
- `views`, `urls`: the endpoints. A graph's schemas and drawing come from `runs.engine`.
"""
