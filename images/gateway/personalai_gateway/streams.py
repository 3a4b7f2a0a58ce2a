"""The metrics stream: the person's latest TrainingRun, watched, as SSE events each time it changes.

    retry: 3000                        <- once: an EventSource reconnects 3 s after the stream ends
    id: 48213                          <- the run's resourceVersion: the state the event shows
    data: {"trainingRun": ..., "phase": "Running", "epoch": 0.5, "loss": 1.9, ...}
    : heartbeat                        <- while nothing changes
    data: {..., "phase": "Succeeded", "final": true}   <- then the stream ends

Before the person has a run it sends heartbeats until one appears. It ends by itself after
stream_max_seconds (the client reconnects), and a person may hold only streams_per_person at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import httpx

from .kube import Kube, KubeError
from .sse import event_frame, heartbeat_frame, retry_frame
from .tokens import Person
from .views import latest_run, progress_event

RETRY_MILLISECONDS = 3000


class StreamSlots:
    """How many streams each person holds; `take` refuses past the cap."""

    def __init__(self, per_person: int):
        self.per_person = per_person
        self.held: Counter[Person] = Counter()

    def take(self, person: Person) -> bool:
        if self.held[person] >= self.per_person:
            return False
        self.held[person] += 1
        return True

    def give_back(self, person: Person) -> None:
        self.held[person] -= 1
        if self.held[person] <= 0:
            del self.held[person]


async def _follow_runs(kube: Kube, person: Person, out: asyncio.Queue) -> None:
    """Put ("snapshot", runs) and then (event type, run) for the person's runs into `out`, until cancelled."""
    selector = f"personalai.dev/personalai={person.name}"
    try:
        while True:
            listed = await kube.trainingruns_of(person.namespace, person.name)
            await out.put(("snapshot", listed.get("items", [])))
            version = listed["metadata"]["resourceVersion"]
            try:
                while True:
                    async for event in kube.watch(person.namespace, "trainingruns", version, selector):
                        run = event.get("object") or {}
                        version = (run.get("metadata") or {}).get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            await out.put((event["type"], run))
            except KubeError as error:
                if error.status != 410:  # 410: the version is too old; list again
                    raise
    except (KubeError, httpx.HTTPError) as error:
        await out.put(("error", f"the run's watch ended ({type(error).__name__})"))


async def run_events(kube: Kube, person: Person, max_seconds: float, heartbeat_seconds: float) -> AsyncIterator[str]:
    """The SSE frames of the person's latest run (see the module docstring)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    updates: asyncio.Queue = asyncio.Queue()
    follower = asyncio.create_task(_follow_runs(kube, person, updates))
    runs: dict[str, dict] = {}
    last: dict | None = None
    try:
        yield retry_frame(RETRY_MILLISECONDS)
        while (left := deadline - loop.time()) > 0:
            try:
                kind, payload = await asyncio.wait_for(updates.get(), timeout=min(heartbeat_seconds, left))
            except TimeoutError:
                yield heartbeat_frame()
                continue
            if kind == "error":
                yield event_frame({"error": payload, "final": False})
                return
            if kind == "snapshot":
                runs = {run["metadata"]["name"]: run for run in payload}
            elif kind == "DELETED":
                runs.pop(payload["metadata"]["name"], None)
            else:
                runs[payload["metadata"]["name"]] = payload
            run = latest_run(list(runs.values()))
            if run is None:
                continue
            event = progress_event(run)
            if event != last:
                yield event_frame(event, run["metadata"].get("resourceVersion"))
                last = event
            if event["final"]:
                return
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
