"""A thread-safe LRU map bounded by its number of entries and by the sum of its values' weights (bytes, boxes):
the anchor fits' cache (:mod:`frcnn.fit_jobs`) and the app's figure cache use it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class BoundedLRU:
    """A thread-safe LRU map bounded by entries and by the sum of its values' weights."""

    def __init__(self, max_entries: int, max_weight: int) -> None:
        self.max_entries, self.max_weight = max_entries, max_weight
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key][0]

    def put(self, key: Hashable, value: Any, weight: int) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._data[key] = (value, weight)
            while len(self._data) > 1 and (len(self._data) > self.max_entries or
                                           sum(w for _, w in self._data.values()) > self.max_weight):
                self._data.popitem(last=False)  # the oldest out; the newest always stays

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
