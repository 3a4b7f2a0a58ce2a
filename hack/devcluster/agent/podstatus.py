"""Pod status as kubelet reports it, built from what the agent knows about its processes (pure).

`ContainerState` is the agent's record of one container; `build_pod_status` turns the records into
the `status` a pod gets: phase (kubelet's rules), conditions, podIP(s), container statuses.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

DEFAULT_WAITING_REASON = "ContainerCreating"
OUR_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL_PHASES = ("Succeeded", "Failed")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code_of(returncode: int) -> int:
    """A process return code as a container exit code: killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ContainerState:
    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = DEFAULT_WAITING_REASON
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    ready: bool = False
    pid: int | None = None
    last_terminated: dict | None = field(default=None)

    def wait(self, reason: str, message: str = "") -> None:
        self.state, self.reason, self.message, self.ready = "waiting", reason, message, False

    def run(self, pid: int) -> None:
        self.state, self.reason, self.message, self.pid = "running", "", "", pid
        self.started_at, self.finished_at, self.exit_code = now_rfc3339(), None, None

    def terminate(self, exit_code: int, message: str = "") -> None:
        self.state, self.exit_code, self.ready, self.message = "terminated", exit_code, False, message
        self.reason = "Completed" if exit_code == 0 else "Error"
        self.finished_at = now_rfc3339()

    def to_status(self) -> dict:
        """The containerStatuses entry."""
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": {"exitCode": self.exit_code, "reason": self.reason,
                                    "startedAt": self.started_at, "finishedAt": self.finished_at,
                                    **({"message": self.message} if self.message else {}),
                                    **({"containerID": f"devagent://{self.pid}"} if self.pid else {})}}
        else:
            state = {"waiting": {"reason": self.reason, **({"message": self.message} if self.message else {})}}
        status = {"name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
                  "started": self.state == "running", "restartCount": self.restart_count, "state": state,
                  "lastState": {"terminated": self.last_terminated} if self.last_terminated else {}}
        if self.pid:
            status["containerID"] = f"devagent://{self.pid}"
        return status

    @property
    def restarting(self) -> bool:
        """Waiting after having run: a restart is pending (CrashLoopBackOff)."""
        return self.state == "waiting" and self.last_terminated is not None


def compute_phase(restart_policy: str, init_states: list[ContainerState], states: list[ContainerState]) -> str:
    """kubelet's getPhase for these containers."""
    for init in init_states:
        if init.state == "terminated" and init.exit_code == 0:
            continue
        if init.state == "terminated" and restart_policy == "Never":
            return "Failed"
        return "Pending"
    running = sum(s.state == "running" for s in states)
    stopped = sum(s.state == "terminated" or s.restarting for s in states)
    succeeded = sum(s.state == "terminated" and s.exit_code == 0 for s in states)
    waiting = len(states) - running - stopped
    if waiting:
        return "Pending"  # one has never started (kubelet: "waiting > 0, pending")
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"  # every container is restarting
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def _condition(kind: str, ok: bool, previous: dict[str, dict], reason: str = "", now: str = "") -> dict:
    status = "True" if ok else "False"
    before = previous.get(kind)
    changed = before is None or before.get("status") != status
    condition = {"type": kind, "status": status,
                 "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
                 "lastProbeTime": None}
    if reason and not ok:
        condition["reason"] = reason
    return condition


def build_pod_status(pod: dict, init_states: list[ContainerState], states: list[ContainerState], *,
                     pod_ip: str, host_ip: str = "127.0.0.1", start_time: str, sandbox_ready: bool = True,
                     now: str | None = None) -> dict:
    """The pod's whole `status` (conditions it does not own, like PodScheduled, are kept)."""
    now = now or now_rfc3339()
    spec = pod.get("spec", {})
    existing = (pod.get("status") or {}).get("conditions") or []
    previous = {c["type"]: c for c in existing}
    phase = compute_phase(spec.get("restartPolicy", "Always"), init_states, states)
    initialized = all(s.state == "terminated" and s.exit_code == 0 for s in init_states)
    containers_ready = phase == "Running" and all(s.ready for s in states)
    gates_ok = all(previous.get(g["conditionType"], {}).get("status") == "True"
                   for g in spec.get("readinessGates") or [])
    terminal = phase in TERMINAL_PHASES
    reason = "PodCompleted" if terminal else "ContainersNotReady"
    conditions = [c for c in existing if c["type"] not in OUR_CONDITIONS] + [
        _condition("PodReadyToStartContainers", sandbox_ready, previous, now=now),
        _condition("Initialized", initialized or terminal, previous,
                   "PodCompleted" if terminal else "ContainersNotInitialized", now),
        _condition("ContainersReady", containers_ready, previous, reason, now),
        _condition("Ready", containers_ready and gates_ok, previous, reason, now),
    ]
    status = {
        "phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}] if pod_ip else [], "startTime": start_time,
        "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        "containerStatuses": [s.to_status() for s in states],
    }
    if init_states:
        status["initContainerStatuses"] = [s.to_status() for s in init_states]
    return status
