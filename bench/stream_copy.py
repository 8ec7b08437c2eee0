"""The worker side of bench/gcs.py's cross-cloud copy, in a process of its own: product code
only (no twin, no moto), so its memory is what a worker's would be.

`python -m bench.stream_copy` with the twin's environment: syncs the multicloud example's
model from Cloud Storage (us-central1) into S3 (us-east-1) and prints one JSON line: seconds,
the process's RSS before the copy and its peak during it (sampled every 5 ms from
/proc/self/statm; ru_maxrss would keep the import peak).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from activities.artifacts.activities import ArtifactActivities
from activities.contracts import SyncInput
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings

RUNBOOK = Path(__file__).resolve().parent.parent / "runbooks" / "llm-inference-multicloud.yaml"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE / 2**20


def main() -> None:
    runbook = load_runbook(RUNBOOK)
    [model] = runbook.spec.models
    artifacts = ArtifactActivities.from_settings(load_settings())
    sync = SyncInput(runbook=runbook, model=model.name, version=model.version, source_region="us-central1", target_region="us-east-1")
    before = rss_mib()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = artifacts.sync(sync)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if not result.verify.ok:
        raise SystemExit(f"copy does not verify: {result.verify.problems}")
    print(json.dumps({"seconds": seconds, "before_mib": before, "peak_mib": max(peak, rss_mib()), "copied": len(result.copied)}))


if __name__ == "__main__":
    main()
