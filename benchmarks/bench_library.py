"""Benchmark: the task library built from full-scale manifests (target < 60 s, < 4 GiB peak, 2 cores).

Generates (once, under --workdir) an iNat2018-sized JSON (437,513 + 24,426 images, 8,142 species in
272 orders), a DeepFashion ``list_attr_img.txt`` of 289,222 × 1,000, the real-size CUB lists and an
iMaterialist train.json of 1,014,544 images; then builds the library in a fresh process
(``verify_images="none"``: the images are not on disk), writes it as Parquet to a temporary folder, and
reports wall time per dataset, the write, the total and the build process's peak RSS. Usage: ``python benchmarks/bench_library.py [--workdir DIR] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("inat2018", "cub200", "imat2018", "deepfashion")

BUILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
from orchestrator.library_io import write_library
from orchestrator.store import open_store
from tasks.config import LibraryConfig
from tasks.library import Library
from tasks.registry import get_adapter
work = Path(sys.argv[1])
config = LibraryConfig(verify_images="none")
times, counts = {}, {}
library = Library()
start = time.perf_counter()
for name in ("inat2018", "cub200", "imat2018", "deepfashion"):
    t = time.perf_counter()
    library.sources[name] = get_adapter(name)(work / name, config)
    times[name] = time.perf_counter() - t
    counts[name] = len(library.sources[name].tasks)
t = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    write_library(open_store(out), "bench", library, config)
times["write Parquet"] = time.perf_counter() - t
total = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
print(json.dumps({"times": times, "counts": counts, "total": total, "peak_gib": peak}))
"""


def generate(work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.synth_cub_imat import write_cub_manifests, write_imat_manifests
    from benchmarks.synth_deepfashion import write_deepfashion_manifests
    from benchmarks.synth_inat2018 import write_inat2018_manifests

    writers = {"inat2018": write_inat2018_manifests, "cub200": write_cub_manifests,
               "imat2018": write_imat_manifests, "deepfashion": write_deepfashion_manifests}
    for name, write in writers.items():
        if not (work / name / ".done").exists():
            t = time.perf_counter()
            write(work / name)
            (work / name / ".done").write_text("")
            print(f"generated {name} in {time.perf_counter() - t:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/task-sweep-bench-library"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    generate(args.workdir)
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", BUILD, str(args.workdir)], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            sys.exit(out.stderr)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    counts = runs[0]["counts"]
    print(f"\n| dataset | tasks | median s |\n|---|---|---|")
    for name in (*DATASETS, "write Parquet"):
        print(f"| {name} | {counts.get(name, '')} | {statistics.median(r['times'][name] for r in runs):.1f} |")
    print(f"| **total** | **{sum(counts.values())}** | **{statistics.median(r['total'] for r in runs):.1f}** |")
    print(f"\npeak RSS of the build process: median {statistics.median(r['peak_gib'] for r in runs):.2f} GiB, "
          f"max {max(r['peak_gib'] for r in runs):.2f} GiB ({args.repeat} runs, {time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()
