"""State backends (DESIGN.md §4): each implements ``rlorinfra.state.backend.StateBackend``.

- ``local``: the state file beside the config (``LocalBackend``), the default.
- ``memory``: a state held in this process (``InMemoryBackend``), for tests.
- ``s3``: an S3 object fenced by its ETag, locked by a conditional create (``S3Backend``).

Every backend passes ``tests/state/test_backend_conformance.py``.
"""
