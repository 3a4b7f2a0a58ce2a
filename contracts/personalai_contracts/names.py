"""Names that more than one component must spell the same way.

The operator makes a PersonalAI's chat Deployment and Service under `chat_server_name`; the gateway
finds the person's chat server by that Service's EndpointSlices.
"""

from __future__ import annotations

# The chat server's built-in personality modes (personalai_server.config.DEFAULT_MODES): the brief's
# `wise` and `nostalgic`, and `playful`. A PersonalAI's spec.serving.personalityModes add to them or,
# with modesPolicy replace, take their place.
DEFAULT_MODE_NAMES = ("wise", "nostalgic", "playful")


def chat_server_name(personalai: str) -> str:
    """The PersonalAI's chat server Deployment and Service."""
    return f"{personalai}-chat"
