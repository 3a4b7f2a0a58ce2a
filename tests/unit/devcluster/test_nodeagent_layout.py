import base64
import os
from pathlib import Path

import pytest

from devcluster.agent.layout import Mount, VolumeError, apply_layout, build_pod_layout
from devcluster.agent.volumes import render_volume_files, write_volume_files

pytestmark = pytest.mark.unit

VOLUMES = Path("/state/pods/u1/volumes")
CLAIMS = Path("/state/claims")


def pod(containers: list[dict], volumes: list[dict], init: list[dict] | None = None) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"containers": containers, "initContainers": init or [], "volumes": volumes}}


TRAINER_VOLUMES = [
    {"name": "config", "configMap": {"name": "run-config"}},
    {"name": "reflections", "secret": {"secretName": "luke-reflections"}},
    {"name": "artifacts", "persistentVolumeClaim": {"claimName": "luke-artifacts"}},
    {"name": "scratch", "emptyDir": {}},
    {"name": "kube-api-access-x1", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
]


def test_trainer_pod_layout_maps_each_mount_to_its_host_folder():
    mounts = build_pod_layout(pod([{"name": "train", "volumeMounts": [
        {"name": "config", "mountPath": "/etc/personalai"},
        {"name": "reflections", "mountPath": "/data/reflections", "readOnly": True},
        {"name": "artifacts", "mountPath": "/artifacts"},
        {"name": "artifacts", "mountPath": "/models", "subPath": "cache"},
        {"name": "scratch", "mountPath": "/tmp/scratch", "readOnly": True},
        {"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
        TRAINER_VOLUMES), VOLUMES, CLAIMS)
    assert mounts == [
        Mount("/artifacts", CLAIMS / "ns" / "luke-artifacts", False),
        Mount("/models", CLAIMS / "ns" / "luke-artifacts" / "cache", False),
        Mount("/data/reflections", VOLUMES / "reflections", True),
        Mount("/etc/personalai", VOLUMES / "config", True),
        Mount("/tmp/scratch", VOLUMES / "scratch", True),
        Mount("/var/run/secrets/kubernetes.io/serviceaccount", VOLUMES / "kube-api-access-x1", True),
    ]


def test_init_container_mounts_come_first_and_one_path_maps_once():
    mounts = build_pod_layout(pod([{"name": "main", "volumeMounts": [{"name": "scratch", "mountPath": "/work"}]}],
                                  [{"name": "scratch", "emptyDir": {}}, {"name": "other", "emptyDir": {}}],
                                  init=[{"name": "prep", "volumeMounts": [{"name": "other", "mountPath": "/work"}]}]),
                              VOLUMES, CLAIMS)
    assert mounts == [Mount("/work", VOLUMES / "other", False)]


@pytest.mark.parametrize("mount,volumes,message", [
    ({"name": "gone", "mountPath": "/x"}, [], "names no volume"),
    ({"name": "h", "mountPath": "/x"}, [{"name": "h", "hostPath": {"path": "/etc"}}], "'hostPath' is not supported"),
    ({"name": "e", "mountPath": "/x", "subPath": "../escape"}, [{"name": "e", "emptyDir": {}}], "without '..'"),
    ({"name": "e", "mountPath": "relative"}, [{"name": "e", "emptyDir": {}}], "must be absolute"),
])
def test_layout_errors_name_the_problem(mount, volumes, message):
    with pytest.raises(VolumeError, match=message):
        build_pod_layout(pod([{"name": "c", "volumeMounts": [mount]}], volumes), VOLUMES, CLAIMS)


def test_apply_layout_links_mount_paths_under_the_pod_root(tmp_path):
    config, claim = tmp_path / "volumes" / "config", tmp_path / "claims" / "ns" / "work"
    scratch = tmp_path / "volumes" / "scratch"
    write_volume_files(config, {"config.json": (b"{}", 0o644)})
    mounts = [Mount("/work", claim, False), Mount("/work/cache", scratch, False),
              Mount("/etc/personalai", config, True)]
    apply_layout(tmp_path / "root", mounts)
    apply_layout(tmp_path / "root", mounts)  # idempotent
    assert (tmp_path / "root" / "etc" / "personalai" / "config.json").read_bytes() == b"{}"
    (tmp_path / "root" / "work" / "result.txt").write_bytes(b"r")
    (tmp_path / "root" / "work" / "cache" / "weights.bin").write_bytes(b"w")
    assert (claim / "result.txt").read_bytes() == b"r" and (scratch / "weights.bin").read_bytes() == b"w"


def test_apply_layout_never_deletes_another_volumes_files(tmp_path):
    claim = tmp_path / "claim"
    (claim / "cache").mkdir(parents=True)
    (claim / "cache" / "kept.bin").write_bytes(b"k")
    with pytest.raises(VolumeError, match="'/work/cache' already holds files"):
        apply_layout(tmp_path / "root", [Mount("/work", claim, False), Mount("/work/cache", tmp_path / "scratch", False)])
    assert (claim / "cache" / "kept.bin").read_bytes() == b"k"


def lookups(config_maps=None, secrets=None, token="tok"):
    return dict(get_config_map=lambda ns, n: (config_maps or {}).get(n), get_secret=lambda ns, n: (secrets or {}).get(n),
                request_token=lambda audience, expiration: f"{token}:{audience}:{expiration}")


def test_config_map_and_secret_files_honour_items_and_modes():
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}}
    volume = {"name": "v", "configMap": {"name": "cm", "items": [{"key": "a", "path": "sub/a.txt", "mode": 0o600}]}}
    assert render_volume_files(pod([], [volume]), volume, pod_ip="127.0.0.2", **lookups({"cm": cm})) == {
        "sub/a.txt": (b"1", 0o600)}
    volume = {"name": "v", "configMap": {"name": "cm"}}
    assert render_volume_files(pod([], [volume]), volume, pod_ip="", **lookups({"cm": cm}))["blob"] == (b"\x00\x01", 0o644)
    secret = {"data": {"k": base64.b64encode(b"s3cret").decode()}}
    volume = {"name": "v", "secret": {"secretName": "s", "defaultMode": 0o400}}
    assert render_volume_files(pod([], [volume]), volume, pod_ip="", **lookups(secrets={"s": secret})) == {"k": (b"s3cret", 0o400)}


def test_missing_sources_fail_unless_optional():
    volume = {"name": "v", "configMap": {"name": "absent"}}
    with pytest.raises(VolumeError, match="configMap 'absent' not found"):
        render_volume_files(pod([], [volume]), volume, pod_ip="", **lookups())
    volume = {"name": "v", "secret": {"secretName": "absent", "optional": True}}
    assert render_volume_files(pod([], [volume]), volume, pod_ip="", **lookups()) == {}


def test_service_account_projection_has_token_ca_and_namespace():
    volume = {"name": "kube-api-access-x", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
    files = render_volume_files(pod([], [volume]), volume, pod_ip="127.0.0.2",
                                **lookups({"kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}}))
    assert files == {"token": (b"tok:None:3607", 0o644), "ca.crt": (b"PEM", 0o644), "namespace": (b"ns", 0o644)}


def test_written_files_are_read_only_updated_in_place_and_stale_ones_removed(tmp_path):
    folder = tmp_path / "v"
    assert write_volume_files(folder, {"a": (b"1", 0o644), "dir/b": (b"2", 0o644)})
    assert oct((folder / "a").stat().st_mode & 0o777) == "0o444"
    assert not write_volume_files(folder, {"a": (b"1", 0o644), "dir/b": (b"2", 0o644)})
    inode = (folder / "a").stat().st_ino
    assert write_volume_files(folder, {"a": (b"changed", 0o644)})
    assert (folder / "a").read_bytes() == b"changed" and (folder / "a").stat().st_ino != inode  # replaced atomically
    assert not (folder / "dir").exists()
    assert [p.name for p in folder.iterdir()] == ["a"] and not any(p.name.startswith(".tmp") for p in folder.iterdir())
    assert os.access(folder, os.W_OK)
