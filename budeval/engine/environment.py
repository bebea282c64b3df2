"""The runner's environment, captured by the run itself into its folder: ``{work_dir}/.budeval/environment.json``.

Before OpenCompass starts, the run's own interpreter (the OpenCompass venv locally, the runner image's ``python`` in
a Job) runs :data:`CAPTURE_SCRIPT` with ``python -c`` and writes its output there (the local backend's wrapper and
the Job's command do this; ``.budeval`` is ignored by the result parser). The script is self-contained (the runner
has no budeval installed), never fails the run (each probe is guarded) and holds no secret: only versions, device
names and host names. Fields (absent values are null):

``python``, ``platform``, ``hostname``, ``node`` (``NODE_NAME``: the Kubernetes node, from the downward API),
``torch``, ``cuda`` (the CUDA version torch was built with), ``cuda_available``, ``gpu_count``, ``gpu_names`` (list),
``driver`` (NVIDIA driver version), ``transformers``, ``opencompass``, ``captured_at`` (epoch seconds: when the run
started).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Where the run writes it, relative to the run's work dir.
ENVIRONMENT_FILE = Path(".budeval") / "environment.json"

CAPTURE_SCRIPT = r"""
import json, os, platform, socket, subprocess, sys, time
from importlib import metadata

def version(name):
    try:
        return metadata.version(name)
    except Exception:
        return None

env = {"python": platform.python_version(), "platform": platform.platform(), "hostname": socket.gethostname(),
       "node": os.environ.get("NODE_NAME") or None, "torch": version("torch"), "cuda": None,
       "cuda_available": False, "gpu_count": 0, "gpu_names": [], "driver": None,
       "transformers": version("transformers"), "opencompass": version("opencompass"), "captured_at": time.time()}
try:
    import torch
    env["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        env["cuda_available"] = True
        env["gpu_count"] = torch.cuda.device_count()
        env["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(env["gpu_count"])]
except Exception:
    pass
try:
    with open("/proc/driver/nvidia/version") as f:
        env["driver"] = f.readline().split("Kernel Module")[-1].split()[0]
except Exception:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        env["driver"] = out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else None
    except Exception:
        pass
print(json.dumps(env, sort_keys=True))
"""


def read_environment(work_dir: Path) -> dict[str, Any]:
    """The captured environment of the run in ``work_dir``; ``{}`` when the run wrote none (or not valid JSON)."""
    try:
        data = json.loads((work_dir / ENVIRONMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def gpu_summary(environment: dict[str, Any]) -> tuple[str, int]:
    """(GPU model, count) of a captured environment: ``("", 0)`` without a GPU; mixed models joined by ``+``."""
    names = [str(n) for n in environment.get("gpu_names") or []]
    count = int(environment.get("gpu_count") or 0)
    return "+".join(sorted(set(names))), count
