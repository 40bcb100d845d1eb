"""A training script that tests/test_multinode.py starts with torchrun, as one node of two or as a
standalone job: ``python multinode_job.py OUT NAME STRATEGY PHASE``. PHASE is "fit" (train and
write weights and history), "full" (the same with checkpoints), "cut" (train with checkpoints
until step 5 raises), "resume" (continue from the newest checkpoint) or "restart" ("cut" in
torchrun's first attempt, "resume" in its restart). Checkpoints go to
OUT/ck-NAME/node<GROUP_RANK>: each node has its own folder, as on machines without a shared
filesystem; each keeps the newest two."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fsdp_jobs


def main(out: str, name: str, strategy: str, phase: str) -> None:
    if phase == "fit":
        fsdp_jobs.fit_job(out, name, 45, 8, strategy)
        return
    if phase == "restart":
        phase = "cut" if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" else "resume"
    checkpoints = Path(out) / f"ck-{name}" / f"node{os.environ.get('GROUP_RANK', '0')}"
    stop_at = 5 if phase == "cut" else None
    resume = "latest" if phase == "resume" else None
    fsdp_jobs.resume_job(out, name, checkpoints, 8, 3, stop_at, resume, 2, strategy, keep=2)


if __name__ == "__main__":
    main(*sys.argv[1:5])
