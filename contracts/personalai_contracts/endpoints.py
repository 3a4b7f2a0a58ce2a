"""Where a Service answers, from its EndpointSlices: what the gateway and the operator use to reach a
person's chat server where no kube-proxy routes the Service's address (the dev node agent), and as
well as its DNS name where one does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # what ties an EndpointSlice to its Service


def ready_address(slices: Iterable[Mapping[str, Any]], port_name: str = "http") -> str | None:
    """host:port of the first ready endpoint of `slices` (the items of an EndpointSlice list), or None.
    A slice's port named `port_name` (or unnamed) is used; an IPv6 address is bracketed."""
    for piece in slices:
        ports = [p["port"] for p in piece.get("ports") or [] if p.get("port") and p.get("name") in (port_name, None)]
        for endpoint in piece.get("endpoints") or []:
            if ports and endpoint.get("addresses") and (endpoint.get("conditions") or {}).get("ready") is not False:
                address = endpoint["addresses"][0]
                return f"[{address}]:{ports[0]}" if ":" in address else f"{address}:{ports[0]}"
    return None
