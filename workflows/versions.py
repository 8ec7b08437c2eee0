"""How workflow code changes without breaking the runs in flight.

A run that spans a worker upgrade (a paused failback, a 75-minute shift, an approval
waiting overnight) is replayed by the new code from its history. Any change to the
commands a run makes (activities, timers, signals, markers) is therefore guarded with
`workflow.patched(ID)`: new runs record the patch and take the new path, runs started
before it replay the old one. Chosen over worker versioning because drpilot is deployed
by its users as one worker Deployment: patches need no second fleet kept alive until the
last old run ends, and tests/workflows/test_replay.py proves both paths replay from the
histories saved for each release (tests/workflows/histories/<version>/).

One patch per release, read once at the start of the run (`Run.execute`), so a release's
changes switch on together. A patch is removed only after no run older than it can still
be open (deprecate_patch first, then delete, one release each).
"""

from __future__ import annotations

from temporalio import workflow

# 0.2.0: one owner for DNS (drift check before every move, fresh gate after a wait,
# guarded destinations for rollback / abort / compensation / re-gate), the failback shift
# judging every serving region, artifacts before pods, RPO, the admission release signal
# and the outcome search attribute.
SAFETY = "drpilot-0.2.0-safety"

# 0.3.0: a rehearsal's waits shorter than calls.SHORT_WAIT_SECONDS (a DNS TTL or a bake
# divided by the speed) are slept by a local activity instead of a timer (activities/rehearsal.py).
REHEARSAL_WAITS = "drpilot-0.3.0-rehearsal-waits"

# 0.4.0: a drill's soak at rehearsal speed lasts, in real time, at least what its Prometheus
# checks' ranges need (drpilot/domain/measurement.py). Read by the drill's soak (workflows/
# soak.py) only when that makes the soak longer, so no earlier history meets it.
MEASURED_SOAK = "drpilot-0.4.0-measured-soak"


# 0.4.0: Route53's control plane. A failover switched by weights checks in preflight that it
# answers (the DNS read's input only); a move of planned work (a shift step) holds while it
# does not answer, polling it, instead of failing (workflows/traffic.py).
CONTROL_PLANE = "drpilot-0.4.0-route53-control-plane"
# 0.4.0: a readiness check of a runbook with spec.drills.cadence reads its last completed
# drill (the drill.last_completed activity). Read by ReadinessWorkflow only, and only then.
DRILL_CADENCE = "drpilot-0.4.0-drill-cadence"
# 0.4.0: failover preflight and readiness check each target's capacity (kube.capacity).
CAPACITY = "drpilot-0.4.0-capacity"

# 0.4.0: readiness of a runbook with spec.drills reads the cold start its newest drill measured
# (drill.last_completed) and judges it against the RTO; failover preflight gates on the
# targets' images and GPU quota as on capacity. Read only where each applies.
COLD_START = "drpilot-0.4.0-cold-start"

# 0.4.0: long activities' heartbeat timeout 10 s instead of 60 (120 for the archive restore and
# the sync): a lost worker costs seconds (workflows/calls.py HEARTBEAT). Read where a run first
# schedules an activity that heartbeats. Replay does not compare activity options (only the
# command's type, activity id and type), so this guards the release's meaning, not replay.
SHORT_HEARTBEAT = "drpilot-0.4.0-short-heartbeat"

# 0.4.0: the runbook's blocks (spec.blocks, workflows/blocks.py) at the procedures' stages.
# Read by a failover or failback only when its runbook has blocks for that action, so a run
# without blocks records no marker and every saved history replays unchanged.
BLOCKS = "drpilot-0.4.0-blocks"

# 0.4.0, the release's one patch of a failover or failback run (Patches.v4): Route53's control
# plane (CONTROL_PLANE above) and the capacity preflight (CAPACITY above) switch on together.
# CONTROL_PLANE, DRILL_CADENCE and CAPACITY are also read on their own by ReadinessWorkflow.
RELEASE_040 = "drpilot-0.4.0"


class Patches:
    """Which release's behaviour this run replays: read once, at the start of the run
    (workflows/control.py), and consulted by every collaborator that changed with it."""

    def __init__(self) -> None:
        self.v2 = False  # SAFETY
        self.v3 = False  # REHEARSAL_WAITS
        self.v4 = False  # RELEASE_040: CONTROL_PLANE and CAPACITY, switched on together

    def read(self) -> None:
        self.v2 = workflow.patched(SAFETY)
        self.v3 = workflow.patched(REHEARSAL_WAITS)
        self.v4 = workflow.patched(RELEASE_040)
