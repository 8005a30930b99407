#!/usr/bin/env python3
"""Sets up kiroku's virtual environment and runs the service or the checks.

    python3 dev.py run [kiroku run options]   the service on the embedded default, with demo traffic
    python3 dev.py test [pytest options]      ruff (lint and format), mypy --strict and the whole test suite

Needs only Python 3.11+; the first call creates ``.venv`` and installs
everything into it, later calls reinstall only when ``pyproject.toml`` changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".kiroku-installed"


def _ensure_environment() -> None:
    if sys.version_info < (3, 11):
        sys.exit("kiroku needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "kiroku").exists():
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing kiroku and its dependencies into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def _call(*command: str) -> int:
    print(f"dev.py: {' '.join(command)}", flush=True)
    child = subprocess.Popen(command, cwd=ROOT)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the child as well (one process group): it is stopping in its
            # own way (kiroku finishes its batch and leaves the group). Wait for it, rather
            # than kill it as subprocess.run would a quarter of a second later.
            continue


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    _ensure_environment()
    if argv[0] == "run":
        return _call(str(BIN / "kiroku"), "run", *(argv[1:] or ["--demo"]))
    for check in (
        (str(BIN / "ruff"), "check", "."),
        (str(BIN / "ruff"), "format", "--check", "."),
        (str(BIN / "mypy")),
    ):
        code = _call(*((check,) if isinstance(check, str) else check))
        if code:
            return code
    return _call(str(BIN / "python"), "-m", "pytest", *argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
