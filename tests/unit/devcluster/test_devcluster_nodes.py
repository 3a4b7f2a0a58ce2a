import base64

import pytest
import yaml

from devcluster import binaries
from devcluster.controlplane import build_kubeconfig
from devcluster.nodes import GPU_PRODUCT_LABEL, KWOK_ANNOTATION, RTX_5090, build_node, default_nodes

pytestmark = pytest.mark.unit


def test_gpu_node_has_product_label_capacity_and_taint():
    node = build_node("gpu-a", gpus=2)
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == RTX_5090
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "2"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"


def test_cpu_node_has_no_gpu_and_no_taint():
    node = build_node("cpu-a")
    assert GPU_PRODUCT_LABEL not in node["metadata"]["labels"]
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert node["spec"]["taints"] == []


def test_node_not_simulated_is_left_alone_by_kwok():
    assert KWOK_ANNOTATION not in build_node("agent", gpus=1, simulated=False)["metadata"]["annotations"]


def test_extra_capacity_and_labels_are_added():
    node = build_node("gpu-b", gpus=1, labels={"zone": "a"}, extra_capacity={"personalai.dev/model-slot": "3"})
    assert node["metadata"]["labels"]["zone"] == "a"
    assert node["status"]["allocatable"]["personalai.dev/model-slot"] == "3"


def test_default_shape_is_two_rtx_5090_nodes_and_one_cpu_node():
    names = [n["metadata"]["name"] for n in default_nodes()]
    assert names == ["rtx5090-0", "rtx5090-1", "cpu-0"]


def test_kubeconfig_inlines_certificates(tmp_path):
    for name in ("ca", "c", "k"):
        (tmp_path / name).write_text(f"{name}-pem")
    config = build_kubeconfig("https://127.0.0.1:1", tmp_path / "ca", tmp_path / "c", tmp_path / "k", "me")
    assert yaml.safe_load(yaml.safe_dump(config))["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
    assert base64.b64decode(config["users"][0]["user"]["client-key-data"]) == b"k-pem"


def test_pins_come_from_the_wrapper_modules():
    pins = binaries.versions()
    assert pins["kubernetes"].startswith("v1.") and pins["etcd"].startswith("v3.6.")
    assert pins["kwok"] and pins["helm"].startswith("v3.")
    assert all(v in binaries.cache_key() for v in pins.values())
