"""Search attribute updates, coalesced: one upsert per activation carries whatever changed.

A step ending and the next one starting happen in the same activation, so coalescing saves a history
event and a visibility write per step; a value equal to the last one sent is not sent again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow


class SearchAttributeBuffer:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled  # slices of a for_each report nothing: their parent does
        self._pending: dict[Any, Any] = {}
        self._sent: dict[str, Any] = {}  # attribute name → last value sent

    def upsert(self, values: dict[Any, Any]) -> None:
        if not self.enabled:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.update(values)

    def _flush(self) -> None:
        changed = {key: value for key, value in self._pending.items() if self._sent.get(key.name) != value}
        self._pending.clear()
        if changed:
            workflow.upsert_search_attributes([key.value_set(value) for key, value in changed.items()])
            self._sent.update({key.name: value for key, value in changed.items()})
