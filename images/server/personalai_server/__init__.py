"""personalai_server."""
