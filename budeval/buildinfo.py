"""budeval's version and the commit it was built from, as stamped at build/install time (``setup.py``).

``budeval/build_info.json`` is written by the build (``pip install``, ``pip wheel``, the service image with its
``BUDEVAL_COMMIT`` build argument), never computed at run time: provenance names the code that was installed. A
source tree used without any install has no stamp: ``commit`` is then empty and ``stamped`` false.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from budeval import __version__

STAMP = Path(__file__).resolve().parent / "build_info.json"


@cache
def build_info() -> dict[str, Any]:
    """``{"version", "commit", "built_at", "stamped"}`` (read once per process)."""
    try:
        data = json.loads(STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": __version__, "commit": "", "built_at": None, "stamped": False}
    return {
        "version": str(data.get("version") or __version__),
        "commit": str(data.get("commit") or ""),
        "built_at": data.get("built_at"),
        "stamped": True,
    }
