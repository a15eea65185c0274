"""State: what rlorinfra manages, on disk.

- ``model``: ``State`` and ``JobRecord`` values and job phases.
- ``codec``: ``encode_state``/``decode_state`` (the JSON format, docs/state.md).
- ``store``: ``StateStore``, the one place that reads and atomically writes the
  file, and ``check_control_plane``.
- ``lock``: ``StateLock`` (``filelock`` on ``<state>.lock``), ``force_unlock``.

Submodules are imported by their users (``from rlorinfra.state.store import
StateStore``); this package imports nothing so that importing ``model`` alone
stays cheap.
"""
