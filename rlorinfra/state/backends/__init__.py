"""State backends (DESIGN.md §4): each implements ``rlorinfra.state.backend.StateBackend``.

- ``local``: the state file beside the config (``LocalBackend``), the default.
- ``memory``: a state held in this process (``InMemoryBackend``), for tests.

Every backend passes ``tests/state/test_backend_conformance.py``.
"""
