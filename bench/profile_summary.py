"""Where the time goes, from a `py-spy record --format raw` file (bench/run.py --profile).

    .venv/bin/python bench/profile_summary.py PROFILE.gil.txt [--top 30]

Prints the share of samples spent inside each of our functions (inclusive: a function's callees
count for it) and the share of each library at the leaf (where the interpreter actually was).
With a `--gil` profile, samples are GIL holders: the split is the split of the CPU time.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]+):\d+\)$")
OURS = re.compile(r"^(runs|threads|deerflow_site|feedback)/")


def summarize(path: Path) -> tuple[int, Counter, Counter]:
    total = 0
    ours: Counter = Counter()
    leaves: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [FRAME.match(frame) for frame in stack.split(";")]
        seen = set()
        for frame in frames:
            if frame and OURS.match(frame["file"]):
                key = f"{frame['function']} ({frame['file']})"
                if key not in seen:  # a recursive or repeated frame counts once per sample
                    seen.add(key)
                    ours[key] += samples
        leaf = frames[-1] if frames else None
        leaves[leaf["file"].split("/")[0] if leaf else "?"] += samples
    return total, ours, leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    total, ours, leaves = summarize(args.profile)
    print(f"{total} samples")
    print("inclusive share, our functions:")
    for key, samples in ours.most_common(args.top):
        print(f"  {100 * samples / total:5.1f}%  {key}")
    print("leaf share, by top-level package or module:")
    for key, samples in leaves.most_common(15):
        print(f"  {100 * samples / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
