import pytest

from devcluster.agent.addresses import AddressesExhausted, AddressPool
from devcluster.agent.podstatus import ContainerState, build_pod_status, compute_phase, exit_code_of
from devcluster.agent.probes import ProbeTracker

pytestmark = pytest.mark.unit


def state(kind: str, exit_code: int | None = None, restarting: bool = False, ready: bool = False) -> ContainerState:
    s = ContainerState("c", "python:3.11")
    if kind == "running":
        s.run(pid=42)
        s.ready = ready
    elif kind == "terminated":
        s.run(pid=42)
        s.terminate(exit_code)
    if restarting:
        s.last_terminated = {"exitCode": 1}
        s.wait("CrashLoopBackOff")
    return s


def pod(restart_policy: str = "Never", conditions: list | None = None) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"restartPolicy": restart_policy},
            "status": {"conditions": conditions or []}}


@pytest.mark.parametrize("policy,init,main,phase", [
    ("Never", [], [state("waiting")], "Pending"),
    ("Never", [], [state("running")], "Running"),
    ("Never", [], [state("terminated", 0)], "Succeeded"),
    ("Never", [], [state("terminated", 0), state("terminated", 3)], "Failed"),
    ("OnFailure", [], [state("waiting", restarting=True)], "Running"),
    ("OnFailure", [], [state("terminated", 0)], "Succeeded"),
    ("Always", [], [state("terminated", 0)], "Running"),
    ("Never", [state("running")], [state("waiting")], "Pending"),
    ("Never", [state("terminated", 1)], [state("waiting")], "Failed"),
    ("OnFailure", [state("terminated", 1)], [state("waiting")], "Pending"),
    ("Never", [state("terminated", 0)], [state("running"), state("waiting")], "Pending"),
])
def test_phase_follows_kubelets_rules(policy, init, main, phase):
    assert compute_phase(policy, init, main) == phase


def test_running_ready_pod_status_has_ip_conditions_and_container_state():
    status = build_pod_status(pod("Always", [{"type": "PodScheduled", "status": "True"}]), [],
                              [state("running", ready=True)], pod_ip="127.0.0.3", start_time="T0", now="T1")
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.0.0.3" and status["podIPs"] == [{"ip": "127.0.0.3"}]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
                          "ContainersReady": "True", "Ready": "True"}
    container = status["containerStatuses"][0]
    assert container["state"]["running"]["startedAt"] and container["started"] and container["ready"]
    assert container["containerID"] == "devagent://42"


def test_unready_container_keeps_the_pod_unready_and_transition_times_are_kept():
    previous = [{"type": "Ready", "status": "False", "lastTransitionTime": "T0"}]
    status = build_pod_status(pod("Always", previous), [], [state("running", ready=False)], pod_ip="127.0.0.3",
                              start_time="T0", now="T5")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady" and ready["lastTransitionTime"] == "T0"


def test_terminated_and_restarting_containers_report_exit_codes():
    failed = build_pod_status(pod("Never"), [], [state("terminated", 3)], pod_ip="127.0.0.4", start_time="T0")
    terminated = failed["containerStatuses"][0]["state"]["terminated"]
    assert failed["phase"] == "Failed" and terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    crashing = state("waiting", restarting=True)
    crashing.restart_count = 2
    status = build_pod_status(pod("Always"), [], [crashing], pod_ip="127.0.0.4", start_time="T0")["containerStatuses"][0]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 1 and status["restartCount"] == 2


def test_init_container_statuses_are_reported_separately():
    status = build_pod_status(pod("Never"), [state("running")], [state("waiting")], pod_ip="127.0.0.4", start_time="T0")
    assert status["phase"] == "Pending"
    assert "running" in status["initContainerStatuses"][0]["state"]
    assert next(c for c in status["conditions"] if c["type"] == "Initialized")["status"] == "False"


def test_signals_become_128_plus_the_signal():
    assert exit_code_of(-9) == 137 and exit_code_of(-15) == 143 and exit_code_of(3) == 3


def test_addresses_start_at_2_are_reused_and_stay_with_their_pod():
    pool = AddressPool(first=2, last=4)
    assert [pool.allocate("a"), pool.allocate("b")] == ["127.0.0.2", "127.0.0.3"]
    assert pool.allocate("a") == "127.0.0.2"
    pool.release("a")
    assert pool.allocate("c") == "127.0.0.2"
    assert pool.allocate("d", preferred="127.0.0.2") == "127.0.0.4"  # taken: the lowest free instead
    with pytest.raises(AddressesExhausted):
        pool.allocate("e")


def test_a_restarted_agent_gives_a_pod_back_its_address():
    pool = AddressPool()
    assert pool.allocate("a", preferred="127.0.0.9") == "127.0.0.9"
    assert pool.allocate("b") == "127.0.0.2"
    assert pool.allocate("c", preferred="10.0.0.1") == "127.0.0.3"  # not one of ours


def test_probe_needs_failure_threshold_misses_to_turn_unready():
    tracker = ProbeTracker({"periodSeconds": 0, "failureThreshold": 2, "successThreshold": 1}, initial=False)
    assert tracker.due() and tracker.record(True) is True
    assert tracker.record(False) is True
    assert tracker.record(False) is False
    assert tracker.record(True) is True
