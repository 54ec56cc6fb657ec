"""Compare the numbers of two benchmark results (`report/metrics.json`), e.g. before and after a restructure.

    python scripts/compare_metrics.py runs/before/report/metrics.json runs/after/report/metrics.json

Every number and string is compared for the methods and generators both results hold (a method only one of them
has is listed, not compared); what describes the invocation rather than the results (run name, folder, code
version, device, dates, timings, wall time) is left out. Exit status 1 when anything differs beyond --rtol.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

INVOCATION = {("run",), ("timings",)}


def leaves(value, path=()):
    """(path, value) for every number, string, bool and null below `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def methods_in_one(before: dict, after: dict) -> set[str]:
    return set(before.get("methods", {})) ^ set(after.get("methods", {}))


def compare(before: dict, after: dict, rtol: float) -> tuple[list[str], int, list[str]]:
    only_one = methods_in_one(before, after)
    listed_after = dict(leaves(after))
    differences, compared = [], 0
    for path, old in leaves(before):
        if path[:1] in {p[:1] for p in INVOCATION} or any(str(part) in only_one for part in path):
            continue
        compared += 1
        if path not in listed_after:
            differences.append(f"{'/'.join(map(str, path))}: missing after")
            continue
        new = listed_after[path]
        same = (math.isclose(old, new, rel_tol=rtol, abs_tol=0.0) or (math.isnan(old) and math.isnan(new))
                if isinstance(old, float) and isinstance(new, float) else old == new)
        if not same:
            differences.append(f"{'/'.join(map(str, path))}: {old!r} -> {new!r}")
    return differences, compared, sorted(only_one)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default: exact)")
    args = parser.parse_args(argv)
    before, after = (json.loads(path.read_text()) for path in (args.before, args.after))
    differences, compared, only_one = compare(before, after, args.rtol)
    print(f"compared {compared} values of the methods and generators in both results"
          + (f"; not compared (in one result only): {', '.join(only_one)}" if only_one else ""))
    for line in differences:
        print("  " + line)
    print("identical" if not differences else f"{len(differences)} values differ")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
