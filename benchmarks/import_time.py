"""What ``import ember`` adds to ``import torch``: the median over fresh interpreters.

Each run is a new Python process that times ``import torch`` and then ``import ember`` inside itself
(so interpreter start-up is not counted) and reports which heavy modules ``import ember`` loaded.
Runs use the bytecode cache, as installed packages do (one untimed run first writes it, also when
``PYTHONDONTWRITEBYTECODE`` is set here); a second set of runs with ``-B`` and the cache ignored
(``PYTHONDONTWRITEBYTECODE``, nothing read or written) shows the cost of compiling ember's sources,
which only a fresh checkout run without write access pays. Target: ember over torch <= 0.15 s (with
the cache). Usage: ``python benchmarks/import_time.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import median, write_result

HEAVY = ("torchvision", "torch._dynamo", "pandas", "matplotlib", "safetensors", "mlflow", "wandb")

CHILD = f"""
import json, sys, time
start = time.perf_counter()
import torch
torch_done = time.perf_counter()
import ember
ember_done = time.perf_counter()
print(json.dumps({{"torch": torch_done - start, "ember": ember_done - torch_done,
                  "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def run_child(cached: bool) -> dict:
    """One fresh interpreter's timings; ``cached``: read (and write) the bytecode cache."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    flags = [] if cached else ["-B"]
    if not cached:
        env["PYTHONPYCACHEPREFIX"] = os.devnull  # no cache found: every module is compiled
    command = [sys.executable, *flags, "-c", CHILD]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(cached: bool, repeats: int) -> dict:
    runs = [run_child(cached) for _ in range(repeats)]
    return {
        "torch_s": median([r["torch"] for r in runs]),
        "ember_over_torch_s": median([r["ember"] for r in runs]),
        "loaded": sorted({m for r in runs for m in r["loaded"]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    run_child(cached=True)  # writes the bytecode cache; not timed
    warm = measure(cached=True, repeats=args.repeats)
    compiled = measure(cached=False, repeats=max(3, args.repeats // 3))
    print(f"import torch                 : {warm['torch_s']:.3f} s (median of {args.repeats} interpreters)")
    print(f"import ember, over torch     : {warm['ember_over_torch_s']:.3f} s  (target <= 0.15)")
    print(f"  without a bytecode cache   : {compiled['ember_over_torch_s']:.3f} s (ember's sources compiled)")
    print(f"heavy modules loaded by ember: {warm['loaded'] or 'none'}")
    write_result(
        "import_time",
        {
            "repeats": args.repeats,
            "torch_s": warm["torch_s"],
            "ember_over_torch_s": warm["ember_over_torch_s"],
            "ember_over_torch_without_bytecode_cache_s": compiled["ember_over_torch_s"],
            "heavy_modules_loaded": warm["loaded"],
        },
    )


if __name__ == "__main__":
    main()
