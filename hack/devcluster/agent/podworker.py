"""One pod on the development node: its folder, volumes, processes, probes and reported status.

A `PodWorker` thread owns one pod from the moment it is bound to the node until its object is
removed: lay out volumes, run init containers in order, run the containers (restarting them with
backoff per restartPolicy), probe them, keep configMap/secret/token files in sync, report status,
and on deletion stop the processes (SIGTERM, grace period, SIGKILL), remove the pod object and free
its address and folder. It stands in for kubelet and a container runtime during development only.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kubernetes.client.rest import ApiException

from .agentlog import log
from .environment import ContainerConfigError, build_agent_env, build_container_env, expand
from .images import NOT_MAPPED_REASON, ImageNotMapped, build_command
from .kubeapi import describe
from .layout import RENDERED_KINDS, VolumeError, apply_layout, build_pod_layout, volume_host_path, volume_kind
from .podstatus import TERMINAL_PHASES, ContainerState, build_pod_status, compute_phase, exit_code_of, now_rfc3339
from .probes import ProbeTracker, run_probe
from .processes import ContainerProcess, run_to_completion, stop_processes
from .volumes import render_volume_files, write_volume_files

if TYPE_CHECKING:
    from .nodeagent import NodeAgent

LOGS_ANNOTATION = "personalai.dev/dev-agent-logs"
TICK_SECONDS = 0.5
VOLUME_SYNC_SECONDS = 3  # how soon an updated ConfigMap or Secret reaches a running pod
BACKOFF_FIRST, BACKOFF_MAX = 2.0, 60.0  # shorter than kubelet's 10 s..5 min: this is a dev loop
BACKOFF_RESET_AFTER = 120.0  # a container that ran this long restarts without accumulated backoff
SHUTDOWN_GRACE_MAX = 5.0  # when the agent itself stops


class PodWorker(threading.Thread):
    def __init__(self, agent: NodeAgent, pod: dict) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod = agent, pod
        self.uid, self.namespace, self.pod_name = meta["uid"], meta["namespace"], meta["name"]
        self.pod_dir = agent.state_dir / "pods" / self.uid
        self.root, self.volumes_root = self.pod_dir / "root", self.pod_dir / "volumes"
        self.log_dir = agent.state_dir / "logs" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.deleting, self.wake = threading.Event(), threading.Event()
        self.gone = self.shutting_down = False
        spec = pod["spec"]
        self.init_specs, self.specs = spec.get("initContainers") or [], spec.get("containers") or []
        self.init_states = [ContainerState(c["name"], c.get("image", "")) for c in self.init_specs]
        self.states = [ContainerState(c["name"], c.get("image", "")) for c in self.specs]
        self.processes: dict[str, ContainerProcess] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.next_start: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.readiness: dict[str, ProbeTracker] = {}
        self.liveness: dict[str, ProbeTracker] = {}
        self.tokens: dict[tuple, tuple[str, float]] = {}
        self.pod_ip = ""
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.published = ""
        self.last_volume_sync = 0.0
        self._restore_restart_counts()

    # -- events from the agent -----------------------------------------------------------------
    def update(self, pod: dict) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()
            self.wake.set()

    def vanish(self) -> None:
        """The pod object is gone (deleted with no grace): stop, with nothing left to delete."""
        self.gone = True
        self.deleting.set()
        self.wake.set()

    def shut_down(self) -> None:
        self.shutting_down = True
        self.wake.set()

    @property
    def stopping(self) -> bool:
        return self.deleting.is_set() or self.shutting_down

    def _sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._lifecycle()
        except Exception as error:  # noqa: BLE001 - a broken pod must not take the agent down
            log("pod.error", "error", namespace=self.namespace, pod=self.pod_name, error=type(error).__name__)
        finally:
            self._teardown()

    def _lifecycle(self) -> None:
        status = self.pod.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            while not self.stopping:  # finished before the agent (re)started: only await deletion
                self._sleep(5)
            return
        self.pod_ip = self.agent.addresses.allocate(self.uid, preferred=status.get("podIP"))
        log("pod.admitted", namespace=self.namespace, pod=self.pod_name, uid=self.uid, pod_ip=self.pod_ip)
        self._call_api(self.agent.api.annotate_pod, self.namespace, self.pod_name, {LOGS_ANNOTATION: str(self.log_dir)})
        self._set_up_volumes()
        for spec, state in zip(self.init_specs, self.init_states):
            if not self._run_init_container(spec, state):
                break
        else:
            self._run_containers()
        self._publish()
        while not self.stopping:  # terminal: no process reads the volumes; the pod stays until deleted
            self._sleep(5)

    def _set_up_volumes(self) -> None:
        while not self.stopping:
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                self._sync_volumes(force=True, raise_errors=True)
                apply_layout(self.root, build_pod_layout(self.pod, self.volumes_root, self.agent.claims_root))
                return
            except (VolumeError, ApiException, OSError) as error:
                message = describe(error) if isinstance(error, ApiException) else str(error)
                for state in self.init_states[:1] or self.states:
                    state.wait("ContainerCreating", f"setting up volumes: {message}")
                log("pod.volumes_failed", "warning", namespace=self.namespace, pod=self.pod_name, error=message)
                self._publish(sandbox_ready=False)
                self._sleep(2)

    def _run_init_container(self, spec: dict, state: ContainerState) -> bool:
        """Run one init container until it succeeds (True), or fails for good under Never (False)."""
        while not self.stopping:
            self._step_container(spec, state)
            if state.state == "terminated":
                if state.exit_code == 0:
                    return True
                if self._policy() == "Never":
                    return False
            self._tick()
        return False

    def _run_containers(self) -> None:
        while not self.stopping:
            for spec, state in zip(self.specs, self.states):
                self._step_container(spec, state)
            if compute_phase(self._policy(), self.init_states, self.states) in TERMINAL_PHASES:
                return
            self._tick()

    def _tick(self) -> None:
        self._publish()
        if time.monotonic() - self.last_volume_sync >= VOLUME_SYNC_SECONDS:
            self._sync_volumes()
        self._sleep(TICK_SECONDS)

    def _policy(self) -> str:
        return self.pod["spec"].get("restartPolicy", "Always")

    # -- one container -------------------------------------------------------------------------
    def _step_container(self, spec: dict, state: ContainerState) -> None:
        name = spec["name"]
        process = self.processes.get(name)
        if process is None:
            if state.state == "terminated":
                return  # not restarted: Never, or OnFailure after success
            if time.monotonic() >= self.next_start.get(name, 0):
                self._start_container(spec, state)
            return
        returncode = process.poll()
        if returncode is None:
            self._probe(spec, state, process)
            return
        del self.processes[name]
        state.terminate(exit_code_of(returncode))
        ran = time.monotonic() - process.started
        log("container.exited", namespace=self.namespace, pod=self.pod_name, container=name,
            exit_code=state.exit_code, seconds=f"{ran:.1f}")
        is_init = spec in self.init_specs
        policy = self._policy()
        if policy == "Always" and not is_init or (policy != "Never" and state.exit_code != 0):
            self._schedule_restart(name, state, ran)

    def _schedule_restart(self, name: str, state: ContainerState, ran: float) -> None:
        backoff = BACKOFF_FIRST if ran > BACKOFF_RESET_AFTER else self.backoff.get(name, BACKOFF_FIRST)
        self.backoff[name] = min(backoff * 2, BACKOFF_MAX)
        state.last_terminated = state.to_status()["state"]["terminated"]
        state.wait("CrashLoopBackOff", f"back-off {backoff:.0f}s restarting container {name}")
        self.next_start[name] = time.monotonic() + backoff

    def _start_container(self, spec: dict, state: ContainerState) -> None:
        name = spec["name"]
        try:
            env = build_container_env(self.pod, spec, agent_env=self._agent_env(), pod_ip=self.pod_ip,
                                      get_config_map=self.agent.api.read_config_map,
                                      get_secret=self.agent.api.read_secret)
            expanded = {**spec, "command": [expand(c, env) for c in spec.get("command") or []],
                        "args": [expand(a, env) for a in spec.get("args") or []]}
            argv = build_command(expanded, sys.executable)
        except ImageNotMapped as error:
            return self._wait(name, state, NOT_MAPPED_REASON, str(error), retry=10)
        except ContainerConfigError as error:
            return self._wait(name, state, "CreateContainerConfigError", str(error), retry=2)
        except ApiException as error:
            return self._wait(name, state, "CreateContainerConfigError", describe(error), retry=2)
        working_dir = self.root / spec.get("workingDir", "/").lstrip("/")
        if state.last_terminated is not None:
            state.restart_count += 1
        try:
            working_dir.mkdir(parents=True, exist_ok=True)
            process = ContainerProcess(argv, env, working_dir, self.log_dir / f"{name}.log")
        except OSError as error:
            state.started_at = now_rfc3339()
            state.terminate(128, f"starting the process failed: {error.strerror}")
            state.reason = "StartError"
            if self._policy() != "Never":
                self._schedule_restart(name, state, 0)
            return
        self.processes[name], self.envs[name] = process, env
        state.run(process.pid)
        self.readiness.pop(name, None)
        self.liveness.pop(name, None)
        if spec.get("readinessProbe"):
            self.readiness[name] = ProbeTracker(spec["readinessProbe"], initial=False)
        if spec.get("livenessProbe"):
            self.liveness[name] = ProbeTracker(spec["livenessProbe"], initial=True)
        state.ready = name not in self.readiness and spec not in self.init_specs
        log("container.started", namespace=self.namespace, pod=self.pod_name, container=name, pid=process.pid,
            restart_count=state.restart_count, log_file=self.log_dir / f"{name}.log")

    def _wait(self, name: str, state: ContainerState, reason: str, message: str, retry: float) -> None:
        if state.reason != reason:
            log("container.waiting", "warning", namespace=self.namespace, pod=self.pod_name, container=name,
                reason=reason)
        state.wait(reason, message)
        self.next_start[name] = time.monotonic() + retry

    def _probe(self, spec: dict, state: ContainerState, process: ContainerProcess) -> None:
        name = spec["name"]

        def run_exec(command: list[str], timeout: float) -> int:
            argv = build_command({**spec, "command": command, "args": []}, sys.executable)
            return run_to_completion(argv, self.envs[name], self.root, timeout)

        readiness = self.readiness.get(name)
        if readiness and readiness.due():
            state.ready = readiness.record(run_probe(readiness.probe, spec, self.pod_ip, run_exec))
        liveness = self.liveness.get(name)
        if liveness and liveness.due() and not liveness.record(run_probe(liveness.probe, spec, self.pod_ip, run_exec)):
            log("container.liveness_failed", "warning", namespace=self.namespace, pod=self.pod_name, container=name)
            stop_processes([process], self._grace_seconds())  # the next step sees the exit and restarts it

    # -- volumes -------------------------------------------------------------------------------
    def _request_token(self, audience: str | None, expiration: int) -> str:
        key = (audience, expiration)
        cached = self.tokens.get(key)
        if cached and time.monotonic() - cached[1] < 0.8 * max(expiration, 600):  # kubelet renews at 80%
            return cached[0]
        token = self.agent.api.request_token(self.pod, audience, expiration)
        self.tokens[key] = (token, time.monotonic())
        return token

    def _sync_volumes(self, force: bool = False, raise_errors: bool = False) -> None:
        """Write every volume's files (emptyDir and claim folders made); an error keeps the old files."""
        self.last_volume_sync = time.monotonic()
        for volume in self.pod["spec"].get("volumes") or []:
            try:
                kind = volume_kind(volume)
                host = volume_host_path(volume, self.namespace, self.volumes_root, self.agent.claims_root)
                if kind not in RENDERED_KINDS:
                    if force:
                        host.mkdir(parents=True, exist_ok=True)
                    continue
                files = render_volume_files(self.pod, volume, pod_ip=self.pod_ip,
                                            get_config_map=self.agent.api.read_config_map,
                                            get_secret=self.agent.api.read_secret, request_token=self._request_token)
                if write_volume_files(host, files) and not force:
                    log("volume.updated", namespace=self.namespace, pod=self.pod_name, volume=volume["name"],
                        files=len(files))
            except (VolumeError, ApiException, OSError) as error:
                if raise_errors:
                    raise
                log("volume.sync_failed", "warning", namespace=self.namespace, pod=self.pod_name,
                    volume=volume.get("name"), error=describe(error) if isinstance(error, ApiException) else str(error))

    # -- reporting -----------------------------------------------------------------------------
    def _agent_env(self) -> dict[str, str]:
        return build_agent_env(apiserver_port=self.agent.apiserver_port, pod_root=str(self.root), pod_ip=self.pod_ip,
                               path=self.agent.path_env, home=str(Path.home()), virtual_env=sys.prefix)

    def _publish(self, sandbox_ready: bool = True) -> None:
        status = build_pod_status(self.pod, self.init_states, self.states, pod_ip=self.pod_ip,
                                  start_time=self.start_time, sandbox_ready=sandbox_ready)
        signature = json.dumps({**status, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                                         for c in status["conditions"]]}, sort_keys=True)
        if signature == self.published or self.gone:
            return
        if self._call_api(self.agent.api.patch_pod_status, self.namespace, self.pod_name, status):
            if json.loads(signature)["phase"] != json.loads(self.published or "{}").get("phase"):
                log("pod.phase", namespace=self.namespace, pod=self.pod_name, phase=status["phase"])
            self.published = signature

    def _call_api(self, call, *args) -> bool:
        try:
            call(*args)
            return True
        except ApiException as error:
            if error.status == 404:
                self.vanish()
            else:
                log("pod.api_failed", "warning", namespace=self.namespace, pod=self.pod_name, error=describe(error))
        except Exception as error:  # noqa: BLE001 - connection trouble: the next tick retries
            log("pod.api_failed", "warning", namespace=self.namespace, pod=self.pod_name, error=type(error).__name__)
        return False

    def _restore_restart_counts(self) -> None:
        """After an agent restart, continue the counts the pod already reports."""
        status = self.pod.get("status") or {}
        for key, states in (("initContainerStatuses", self.init_states), ("containerStatuses", self.states)):
            reported = {s["name"]: s for s in status.get(key) or []}
            for state in states:
                if state.name in reported:
                    previous = reported[state.name]
                    state.restart_count = previous.get("restartCount", 0)
                    state.last_terminated = (previous.get("state") or {}).get("terminated") or \
                        (previous.get("lastState") or {}).get("terminated")

    def _grace_seconds(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = spec.get("terminationGracePeriodSeconds", 30) if grace is None else grace
        return min(float(grace), SHUTDOWN_GRACE_MAX) if self.shutting_down else float(grace)

    def _teardown(self) -> None:
        running = list(self.processes.values())
        if running:
            log("pod.stopping", namespace=self.namespace, pod=self.pod_name, processes=len(running),
                grace_seconds=self._grace_seconds())
            stop_processes(running, self._grace_seconds())
            for spec, state in zip(self.init_specs + self.specs, self.init_states + self.states):
                process = self.processes.pop(spec["name"], None)
                if process is not None:
                    returncode = process.poll()
                    state.terminate(exit_code_of(-15 if returncode is None else returncode),
                                    "stopped by the development node agent")
        if self.shutting_down and not self.deleting.is_set():
            self._publish()  # the pod stays; a restarted agent takes it up again
            return
        if not self.gone:
            self._call_api(self.agent.api.delete_pod, self.namespace, self.pod_name, self.uid)
        self.agent.addresses.release(self.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.agent.forget(self.uid)
        log("pod.removed", namespace=self.namespace, pod=self.pod_name, uid=self.uid)
