"""How every benchmark hands over its results: JSON on standard output, and in a file if asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(results: dict[str, Any], path: Path | None) -> None:
    """Print the results as JSON and, with a path, write them there too (its folder made if needed)."""
    text = json.dumps(results, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
