"""The server model tier's fixtures; the helpers live in server_harness.py (importable by tests)."""

from server_harness import _one_torch_thread, artifacts_dir, start_server, tiny_model_dir  # noqa: F401
