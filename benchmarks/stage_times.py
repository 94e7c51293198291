"""Benchmark: where the time of `dvc repro` goes. Runs `dvc repro` (extra arguments are passed
on, e.g. `--force`), shows its log as it comes, and notes when each "Running stage" line
arrives; then prints each stage's wall time (to the next stage's start, the last to the end)
and the totals per stage kind (train, evaluate, ...), into docs/results/stage_times.md.
Asserts nothing.

    python benchmarks/stage_times.py            # on a fresh clone: the whole default pipeline
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import defaultdict

from vae_tf.provenance import write_result


def main() -> None:
    start = time.perf_counter()
    starts: list[tuple[str, float]] = []
    with subprocess.Popen(["dvc", "repro", *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as repro:
        for line in repro.stdout:
            sys.stdout.write(line)
            stage = re.match(r"Running stage '([^']+)'", line)
            if stage:
                starts.append((stage.group(1), time.perf_counter()))
    end = time.perf_counter()
    if repro.returncode:
        raise SystemExit(f"dvc repro failed (exit {repro.returncode})")
    by_kind: dict[str, float] = defaultdict(float)
    lines = ["| stage | seconds |", "| --- | --- |"]
    for (stage, begin), (_, after) in zip(starts, [*starts[1:], ("", end)]):
        lines.append(f"| {stage} | {after - begin:.1f} |")
        by_kind[stage.split("@")[0]] += after - begin
    lines += ["", "Per kind: " + ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in by_kind.items()) + ".",
              f"dvc repro: {end - start:.0f} s, {len(starts)} stages run."]
    print("\n".join(lines))
    write_result("stage_times", " ".join(["python", "benchmarks/stage_times.py", *sys.argv[1:]]), "\n".join(lines))


if __name__ == "__main__":
    main()
