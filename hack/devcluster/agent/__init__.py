"""A development node agent: runs the pods bound to its node as local processes, standing in for
kubelet and a container runtime during development only. See nodeagent.py for how to run it.

Pure parts (tested without a cluster): images.py (what runs), environment.py (the env),
layout.py and volumes.py (volumes as folders under the pod's root), addresses.py (pod IPs),
podstatus.py (status from process state), probes.py. kubeapi.py is the one module that calls the API.
"""

from .layout import Mount, build_pod_layout

__all__ = ["Mount", "build_pod_layout"]
