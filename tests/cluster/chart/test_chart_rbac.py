"""What the chart's operator ServiceAccount may do, as the API server itself answers it
(`kubectl auth can-i --list`), against the checked-in operator_permissions.txt: any difference fails
and shows the diff, so a widening is never silent (a narrowing updates the file in the same change).
"""

import difflib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

EXPECTED = Path(__file__).with_name("operator_permissions.txt")
HEADER = """\
# What the chart's operator ServiceAccount may do: `kubectl auth can-i --list --as <its SA> -n <ns>`,
# whitespace collapsed, rows sorted; checked by test_chart_rbac.py. A change here is a change of the
# operator's privilege: review it, then update this file with the test's output.
"""


def _can_i_list(cluster, release, namespace: str) -> list[str]:
    out = cluster.kubectl("auth", "can-i", "--list", "--as", release.service_account, "-n", namespace).stdout
    rows = [re.sub(r"\s+", " ", line.strip()) for line in out.splitlines()[1:] if line.strip()]
    return sorted(rows)


def _can_i(cluster, release, verb: str, resource: str, namespace: str, *flags: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, *flags, "--as", release.service_account,
                             "-n", namespace, check=False)
    return result.stdout.strip() == "yes"


def test_operator_permissions_match_the_snapshot(cluster, release, new_namespace, tmp_path):
    watched = [new_namespace("w1"), new_namespace("w2")]
    unwatched = new_namespace("unwatched")
    release.helm("install", "--set", "crds.install=false", "--set", f"watchNamespaces={{{','.join(watched)}}}")

    per_watched = {namespace: _can_i_list(cluster, release, namespace) for namespace in watched}
    assert per_watched[watched[0]] == per_watched[watched[1]], "every watched namespace gets the same Role"
    sections = {"watched namespace": per_watched[watched[0]],
                "unwatched namespace": _can_i_list(cluster, release, unwatched),
                "release namespace": _can_i_list(cluster, release, release.namespace)}
    actual = HEADER + "".join(f"\n[{title}]\n" + "\n".join(rows) + "\n" for title, rows in sections.items())
    if actual != EXPECTED.read_text():
        (tmp_path / EXPECTED.name).write_text(actual)
        diff = "".join(difflib.unified_diff(EXPECTED.read_text().splitlines(True), actual.splitlines(True),
                                            "expected", "granted now"))
        pytest.fail(f"the operator's permissions changed ('+' rows are new grants):\n{diff}\n"
                    f"if intended: cp {tmp_path / EXPECTED.name} {EXPECTED}")


def test_operator_cannot_run_pods_or_read_secrets_where_it_does_not_watch(cluster, release, new_namespace):
    watched, unwatched = new_namespace("watched"), new_namespace("unwatched")
    release.helm("install", "--set", "crds.install=false", "--set", f"watchNamespaces={{{watched}}}")

    for verb, resource in (("create", "pods"), ("create", "jobs.batch"), ("create", "secrets"), ("get", "secrets"),
                           ("create", "deployments.apps"), ("create", "serviceaccounts"),
                           ("create", "roles.rbac.authorization.k8s.io")):
        assert not _can_i(cluster, release, verb, resource, unwatched), f"{verb} {resource} in {unwatched}"
    # Where it does watch: what it makes, and no more (pods come from the Job controller, not from it).
    assert _can_i(cluster, release, "create", "jobs.batch", watched)
    assert _can_i(cluster, release, "get", "secrets", watched)
    assert not _can_i(cluster, release, "list", "secrets", watched)
    assert not _can_i(cluster, release, "create", "pods", watched)
    assert not _can_i(cluster, release, "create", "serviceaccounts", watched, "--subresource=token")
