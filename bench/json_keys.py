"""What refusing duplicate keys costs `deerflow_site.api.parsers.loads`: its decoder with the
duplicate-key hook against the same decoder without it, alternated in one process, on request
bodies of a few sizes (microseconds per call, the best of the rounds).

    .venv/bin/python bench/json_keys.py [--calls 5000] [--rounds 15]

The hook is a Python call per JSON object, so the cost grows with the objects of a body: read it
per object; the machine's load moves both columns.
"""

import argparse
import functools
import json
import os
import sys
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BODIES = {
    "run create, the README's": {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": "What is 6 * 7?"}]},
        "stream_mode": ["values", "messages-tuple"],
        "config": {"configurable": {"model": "x"}, "recursion_limit": 25},
        "metadata": {"project": "demo"},
        "multitask_strategy": "enqueue",
    },
    "run create, the bench's": {"assistant_id": "bench", "input": {"text": "c1-2"}},
    "thread create": {"metadata": {"project": "demo"}},
    "a chat of 50 messages": {
        "assistant_id": "agent",
        "input": {
            "messages": [
                {"role": "user", "content": "hello " * 20, "id": str(i), "additional_kwargs": {}}
                for i in range(50)
            ]
        },
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from deerflow_site.api import parsers

    decoders = {
        "without": json.JSONDecoder(
            parse_int=parsers._bounded_int,
            parse_float=parsers._finite_float,
            parse_constant=parsers._refuse_constant,
        ),
        "with": parsers._DECODER,
    }
    for name, value in BODIES.items():
        body = json.dumps(value).encode()
        best = dict.fromkeys(decoders, float("inf"))
        for _ in range(args.rounds):
            for label, decoder in decoders.items():
                parsers._DECODER = decoder
                seconds = timeit.timeit(functools.partial(parsers.loads, body), number=args.calls)
                best[label] = min(best[label], seconds / args.calls * 1e6)
        objects = body.count(b"{")
        print(
            f"{name:26s} {objects:3d} objects: without {best['without']:6.2f} µs, "
            f"with {best['with']:6.2f} µs (+{best['with'] - best['without']:.2f})"
        )


if __name__ == "__main__":
    main()
