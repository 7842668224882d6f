"""The artifact set of tests/backends (built once per session, shared with tests/edge_runtime)."""

from tests.backends.conftest import manifest_path  # noqa: F401 (a fixture, used by name)
