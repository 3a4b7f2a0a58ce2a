import base64

import pytest

from devcluster.agent.environment import ContainerConfigError, build_agent_env, build_container_env, expand
from devcluster.agent.images import ImageNotMapped, build_command, image_repository_name

pytestmark = pytest.mark.unit

PYTHON = "/venv/bin/python"
AGENT_ENV = build_agent_env(apiserver_port=16443, pod_root="/state/pods/u1/root", pod_ip="127.0.0.5",
                            path="/venv/bin:/usr/bin", home="/root", virtual_env="/venv")
CONFIG_MAPS = {("ns", "settings"): {"data": {"mode": "fast", "level": "3"}}}
SECRETS = {("ns", "creds"): {"data": {"token": base64.b64encode(b"t0k").decode()}}}


def pod(container: dict) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"nodeName": "dev-rtx5090-0", "serviceAccountName": "runner", "containers": [container]}}


def env_for(container: dict) -> dict[str, str]:
    return build_container_env(pod(container), container, agent_env=AGENT_ENV, pod_ip="127.0.0.5",
                               get_config_map=lambda ns, n: CONFIG_MAPS.get((ns, n)),
                               get_secret=lambda ns, n: SECRETS.get((ns, n)))


def test_values_field_refs_and_key_refs_resolve():
    env = env_for({"name": "c", "env": [
        {"name": "PLAIN", "value": "v"},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]})
    assert {k: env[k] for k in ("PLAIN", "NAME", "NS", "UID", "NODE", "SA", "IP", "APP", "MODE", "TOKEN")} == {
        "PLAIN": "v", "NAME": "p", "NS": "ns", "UID": "u1", "NODE": "dev-rtx5090-0", "SA": "runner",
        "IP": "127.0.0.5", "APP": "x", "MODE": "fast", "TOKEN": "t0k"}


def test_env_from_with_prefix_and_env_overriding_it():
    env = env_for({"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                                            {"secretRef": {"name": "creds"}}],
                   "env": [{"name": "CFG_mode", "value": "slow"}]})
    assert env["CFG_mode"] == "slow" and env["CFG_level"] == "3" and env["token"] == "t0k"


def test_agent_variables_are_set_and_win_and_nothing_else_leaks_in():
    env = env_for({"name": "c", "env": [{"name": "PERSONALAI_PATH_PREFIX", "value": "/elsewhere"},
                                        {"name": "KEEP", "value": "1"}]})
    assert env == {**AGENT_ENV, "KEEP": "1"}
    assert env["PERSONALAI_PATH_PREFIX"] == "/state/pods/u1/root"
    assert env["PERSONALAI_LISTEN_HOST"] == "127.0.0.5"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "16443"
    assert env["HF_HUB_OFFLINE"] == "1" and env["PYTHONUNBUFFERED"] == "1" and env["VIRTUAL_ENV"] == "/venv"


def test_dependent_variables_expand_like_kubernetes():
    env = env_for({"name": "c", "env": [{"name": "A", "value": "one"},
                                        {"name": "B", "value": "$(A)-two $(MISSING) $$(A) at $(PERSONALAI_LISTEN_HOST)"}]})
    assert env["B"] == "one-two $(MISSING) $(A) at 127.0.0.5"
    assert expand("$(X", {"X": "1"}) == "$(X" and expand("cost $5", {}) == "cost $5"


def test_missing_references_fail_unless_optional():
    with pytest.raises(ContainerConfigError, match="'absent'"):
        env_for({"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]})
    with pytest.raises(ContainerConfigError, match="key 'nope'"):
        env_for({"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}]})
    env = env_for({"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k",
                                                                                     "optional": True}}}],
                   "envFrom": [{"configMapRef": {"name": "absent", "optional": True}}]})
    assert "X" not in env


def test_error_messages_never_carry_values():
    with pytest.raises(ContainerConfigError) as error:
        env_for({"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "other"}}}]})
    assert "t0k" not in str(error.value)


@pytest.mark.parametrize("image,name", [("personalai/trainer:0.1.0", "trainer"), ("registry:5000/a/server@sha256:ab", "server"),
                                        ("python:3.11-slim", "python"), ("operator", "operator"), ("nginx:1.27", "nginx")])
def test_image_repository_name(image, name):
    assert image_repository_name(image) == name


def test_python_command_runs_with_the_agents_interpreter_and_args_unchanged():
    argv = build_command({"image": "personalai/trainer:0.1.0", "command": ["python3", "-m", "personalai_trainer"],
                          "args": ["--config", "/etc/personalai/config.json"]}, PYTHON)
    assert argv == [PYTHON, "-m", "personalai_trainer", "--config", "/etc/personalai/config.json"]
    assert build_command({"image": "python:3.11", "command": ["/usr/local/bin/python3.11", "-c", "pass"]}, PYTHON)[0] == PYTHON
    assert build_command({"image": "python:3.11", "command": ["sh", "-c", "true"]}, PYTHON) == ["sh", "-c", "true"]


def test_project_images_without_a_command_run_their_module():
    assert build_command({"image": "personalai/server:0.1.0", "args": ["--port", "8080"]}, PYTHON) == [
        PYTHON, "-m", "personalai_server", "--port", "8080"]


def test_other_images_are_refused_with_a_clear_message():
    with pytest.raises(ImageNotMapped, match="'nginx:1.27' is not run by the development node agent"):
        build_command({"image": "nginx:1.27", "command": ["nginx"]}, PYTHON)
