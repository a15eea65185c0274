"""State: what rlorinfra manages, on disk.

- ``model``: ``State`` and ``JobRecord`` values and job phases.
- ``codec``: ``encode_state``/``decode_state`` (the JSON format 2, format 1 read
  and upgraded; docs/state.md).
- ``files``: ``atomic_write`` and ``make_private_folder``, the one durable writer
  (state, backup, lock info, saved plan files).
- ``store``: ``StateStore``, the one place that reads and atomically writes the
  file, and ``check_control_plane``.
- ``lock``: ``StateLock`` (``filelock`` on ``<state>.lock``), ``LockInfo``, ``force_unlock``.
- ``backend``: the ``StateBackend`` protocol; ``backends/``: ``LocalBackend``
  (the file, over ``StateStore`` and ``StateLock``) and ``InMemoryBackend``.

Submodules are imported by their users (``from rlorinfra.state.store import
StateStore``); this package imports nothing so that importing ``model`` alone
stays cheap.
"""
