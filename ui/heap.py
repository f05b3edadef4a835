"""Keeping Python's cycle collector off what the page process loads for good.

The libraries, the store and the title index are some 400,000 objects at 100,000 songs. Every
full collection walked them all and paused every visitor for 0.4 s, about once per search.
"""

from __future__ import annotations

import gc
import sys
import threading

_lock = threading.Lock()
_modules_when_frozen = 0


def freeze_what_is_loaded() -> None:
    """Once the process has imported more (at start, or when a model first loads), collect once
    and move every live object out of the collector's reach; objects made afterwards are collected as usual."""
    global _modules_when_frozen
    if len(sys.modules) == _modules_when_frozen:
        return
    with _lock:
        if len(sys.modules) != _modules_when_frozen:
            gc.collect()
            gc.freeze()
            _modules_when_frozen = len(sys.modules)
