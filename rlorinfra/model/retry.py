"""Which control-plane answers are worth another attempt: one rule for the client and apply."""

from __future__ import annotations

# Timeouts, throttling and server errors. The client retries these; after its retries
# run out, apply knows that an earlier attempt of a create may still have landed.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
