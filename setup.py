"""Build hook of budeval (everything else is in pyproject.toml): stamps ``budeval/build_info.json`` into the build.

The file records budeval's version and the commit it was built from, so provenance names the code that ran in any
install -- the service image has no git checkout, and asking git at run time would describe the checkout, not the
install. The commit is ``BUDEVAL_COMMIT`` when set (docker/Dockerfile.service passes it as a build argument), else
``git rev-parse HEAD`` of the source tree at build time (``-dirty`` appended when it has uncommitted changes), else
empty. An editable install writes the file into the source tree (git-ignored), so it names the commit installed.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def build_info() -> dict[str, str]:
    version = ""
    for line in (HERE / "budeval" / "__init__.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            version = line.split("=", 1)[1].strip().strip("\"'")
    commit = os.environ.get("BUDEVAL_COMMIT", "").strip()
    if not commit:
        commit = _git("rev-parse", "HEAD")
        if commit and _git("status", "--porcelain", "--untracked-files=no"):
            commit += "-dirty"
    return {"version": version, "commit": commit, "built_at": datetime.now(UTC).isoformat(timespec="seconds")}


class StampedBuildPy(build_py):
    def run(self) -> None:
        super().run()
        text = json.dumps(build_info(), sort_keys=True) + "\n"
        targets = [Path(self.build_lib) / "budeval" / "build_info.json"]
        if getattr(self, "editable_mode", False):
            targets.append(HERE / "budeval" / "build_info.json")
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


setup(cmdclass={"build_py": StampedBuildPy})
