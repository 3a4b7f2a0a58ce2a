"""spec.serving.abTest (pure): which candidate the chat server serves beside the current adapter,
what a decision does to the adapters, and status.abTest / status.ratings from the server's stats.

The candidate must be an adapter of this PersonalAI's own history that passed validation (adapters
are personal data: nothing else may be served). Promote makes it current the way promotion does
(the replaced adapter goes to the front of the history); Drop stops serving it. A decided test stays
decided: a later promotion of a newer run is not undone by a Promote still written in the spec.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from personalai_operator.models import ABTest, VersionStats
from personalai_operator.promotion import HISTORY_LIMIT, Promotion

STATS_PATH = "/api/ai-echo/stats"
ENDED = {"Promote": "Promoted", "Drop": "Dropped"}
FIELD = "spec.serving.abTest.candidateVersion"


@dataclass(frozen=True)
class ABPlan:
    """What the A/B test asks of serving: the server config's candidate block, and the adapters after a decision."""

    candidate_version: str
    share: int
    phase: str
    message: str
    candidate: dict[str, Any] | None = None  # the chat server's `candidate` config (Running only)
    promotion: Promotion | None = None  # currentAdapter/adapterHistory after a Promote, else unchanged


def plan_ab_test(ab: ABTest | None, promotion: Promotion, pinned: str | None,
                 previous: dict[str, Any] | None, now: str) -> ABPlan | None:
    """The A/B test's plan for this pass; None without spec.serving.abTest. `previous`: status.abTest."""
    previous = previous or {}
    if ab is None:  # a running test whose spec is gone ends as a Drop would (its status would say Running)
        if previous.get("phase") != "Running":
            return None
        return ABPlan(previous["candidateVersion"], previous.get("share", 0), "Dropped",
                      f"spec.serving.abTest was removed: candidate {previous['candidateVersion']} no longer serves.")
    version = ab.candidate_version
    if (ab.decision and previous.get("phase") == ENDED[ab.decision]
            and previous.get("candidateVersion") == version):
        return ABPlan(version, ab.share, previous["phase"], previous.get("message", ""))
    current = (promotion.current or {}).get("version")

    def invalid(why: str) -> ABPlan:
        return ABPlan(version, ab.share, "Invalid", why)

    if pinned:
        return invalid(f"spec.serving.abTest cannot run while spec.serving.adapterVersion pins {pinned}.")
    if current is None:
        return invalid("spec.serving.abTest needs a current adapter to compare the candidate with.")
    if version == current:
        return invalid(f"{FIELD} {version} is the current adapter: name another one.")
    record = next((entry for entry in promotion.history if entry.get("version") == version), None)
    if record is None:
        return invalid(f"{FIELD} {version} is not an adapter of this PersonalAI.")
    if record.get("rejected"):
        return invalid(f"{FIELD} {version} did not pass validation and cannot be served.")
    if ab.decision == "Drop":
        return ABPlan(version, ab.share, "Dropped", f"Candidate {version} was dropped; {current} stays current.")
    if ab.decision == "Promote":
        others = [entry for entry in promotion.history if entry is not record]
        promoted = Promotion({**record, "promotedAt": now}, [entry for entry in (promotion.current, *others) if entry][:HISTORY_LIMIT])
        return ABPlan(version, ab.share, "Promoted", f"Candidate {version} was promoted over {current}.",
                      promotion=promoted)
    return ABPlan(version, ab.share, "Running",
                  f"Candidate {version} gets {ab.share}% of new sessions beside current {current}.",
                  candidate={"version": version, "manifestSha256": record.get("manifestSha256"), "share": ab.share})


def stats_request(address: str, token: str) -> urllib.request.Request:
    """GET the chat server's stats at host:port `address`, under the person's token."""
    return urllib.request.Request(f"http://{address}{STATS_PATH}", headers={"Authorization": f"Bearer {token}"})


def parse_stats(body: bytes) -> dict[str, dict[str, Any]]:
    """status.abTest.versions from the stats route's answer; ValueError naming the field when it is not one."""
    try:
        versions = json.loads(body)["versions"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError("the chat server's stats have no `versions` object") from error
    if not isinstance(versions, dict):
        raise ValueError("the chat server's stats: `versions` is not an object")
    figures = {}
    for version, stats in versions.items():
        try:
            figures[str(version)] = VersionStats.model_validate(stats).model_dump(by_alias=True, exclude_none=True)
        except ValidationError as error:
            where = ".".join(str(part) for part in error.errors()[0]["loc"])
            raise ValueError(f"the chat server's stats: versions.<version>.{where} is not valid") from error
    return figures


def ratings_of(versions: dict[str, dict[str, Any]], previous: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """status.ratings: up/down by version, over the `previous` ones (a merge patch never drops a version:
    one the server stops listing keeps its last counts instead of differing from the status forever)."""
    return {**(previous or {}),
            **{version: {"up": stats["ratingsUp"], "down": stats["ratingsDown"]} for version, stats in versions.items()}}


def ab_test_status(plan: ABPlan, versions: dict[str, dict[str, Any]] | None, unread: str | None,
                   previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """status.abTest. `versions`: the figures just read (None: none read, the last ones stay); `unread`: why
    the chat server could not be read. observedAt moves only when the figures change."""
    previous = previous or {}
    kept = previous.get("versions") or {}
    observed_at = previous.get("observedAt")
    if versions is not None and {**kept, **versions} != kept:  # merged, as the status patch merges them
        kept, observed_at = {**kept, **versions}, now
    message = plan.message
    if unread:
        message += f" The chat server's figures could not be read ({unread}); these are from {observed_at or 'never'}."
    status = {"candidateVersion": plan.candidate_version, "share": plan.share, "phase": plan.phase,
              "message": message, "versions": kept, "observedAt": observed_at}
    return {key: value for key, value in status.items() if value is not None}
