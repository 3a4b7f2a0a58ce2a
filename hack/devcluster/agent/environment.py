"""The environment of a container run by the development node agent (pure).

As kubelet builds it: `envFrom` first, then `env` in order (later wins, `$(VAR)` expands against what
is defined so far), then the agent's own variables, which always win because they describe where the
pod really runs: the API on loopback, the pod's root folder as PERSONALAI_PATH_PREFIX, its loopback
address as PERSONALAI_LISTEN_HOST, the hub offline, and PATH/HOME/VIRTUAL_ENV of the agent's venv.
Nothing from the agent's own environment leaks in otherwise.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping

Lookup = Callable[[str, str], "dict | None"]  # (namespace, name) -> object as a dict, None when absent


class ContainerConfigError(Exception):
    """A reference the container needs is missing (kubelet's CreateContainerConfigError)."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` escapes `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(variables[name] if name in variables else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def decode_secret_data(secret: dict) -> dict[str, str]:
    """A Secret's values as text (undecodable bytes survive through surrogateescape)."""
    return {k: base64.b64decode(v).decode("utf-8", "surrogateescape") for k, v in (secret.get("data") or {}).items()}


def config_map_data(config_map: dict) -> dict[str, str]:
    data = dict(config_map.get("data") or {})
    for key, value in (config_map.get("binaryData") or {}).items():
        data[key] = base64.b64decode(value).decode("utf-8", "surrogateescape")
    return data


def field_value(pod: dict, field_path: str, pod_ip: str, host_ip: str = "127.0.0.1") -> str:
    """The value of a downward-API fieldRef, as kubelet resolves it."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip,
    }
    if field_path in simple:
        return simple[field_path]
    for prefix, source in (("metadata.labels", meta.get("labels") or {}),
                           ("metadata.annotations", meta.get("annotations") or {})):
        if field_path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(source.items()))
        if field_path.startswith(prefix + "['") and field_path.endswith("']"):
            return source.get(field_path[len(prefix) + 2:-2], "")
    raise ContainerConfigError(f"unsupported fieldRef {field_path!r}")


def resource_value(container: dict, resource: str) -> str:
    """A resourceFieldRef: the container's limit, else its request, else empty (no divisor support)."""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name) or (resources.get("requests") or {}).get(name)
    return str(value) if value is not None else ""


def _key_from(lookup: Lookup, kind: str, namespace: str, ref: dict) -> str | None:
    obj = lookup(namespace, ref["name"])
    optional = ref.get("optional", False)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f"{kind} {ref['name']!r} not found")
    data = decode_secret_data(obj) if kind == "secret" else config_map_data(obj)
    if ref["key"] not in data:
        if optional:
            return None
        raise ContainerConfigError(f"key {ref['key']!r} not found in {kind} {ref['name']!r}")
    return data[ref["key"]]


def build_container_env(pod: dict, container: dict, *, agent_env: Mapping[str, str], pod_ip: str,
                        get_config_map: Lookup, get_secret: Lookup) -> dict[str, str]:
    """The full environment for `container` of `pod` (see the module docstring for the order)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref_key, lookup in (("configMap", "configMapRef", get_config_map),
                                      ("secret", "secretRef", get_secret)):
            ref = source.get(ref_key)
            if ref is None:
                continue
            obj = lookup(namespace, ref["name"])
            if obj is None:
                if ref.get("optional", False):
                    continue
                raise ContainerConfigError(f"{kind} {ref['name']!r} not found (envFrom)")
            data = decode_secret_data(obj) if kind == "secret" else config_map_data(obj)
            env |= {prefix + k: v for k, v in data.items()}
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(item.get("value", ""), {**agent_env, **env})
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip)
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"]["resource"])
        elif "secretKeyRef" in source:
            value = _key_from(get_secret, "secret", namespace, source["secretKeyRef"])
            if value is not None:
                env[name] = value
        elif "configMapKeyRef" in source:
            value = _key_from(get_config_map, "configMap", namespace, source["configMapKeyRef"])
            if value is not None:
                env[name] = value
        else:
            raise ContainerConfigError(f"unsupported valueFrom for env {name!r}")
    return env | dict(agent_env)


def build_agent_env(*, apiserver_port: int, pod_root: str, pod_ip: str, path: str, home: str,
                    virtual_env: str) -> dict[str, str]:
    """The variables the agent sets in every container (they win over the pod spec's)."""
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(apiserver_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(apiserver_port),
        "PERSONALAI_PATH_PREFIX": pod_root, "PERSONALAI_LISTEN_HOST": pod_ip,
        "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
        "PATH": path, "HOME": home, "VIRTUAL_ENV": virtual_env,
    }
