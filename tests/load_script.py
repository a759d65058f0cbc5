"""Import a file of scripts/ or space/ as a module: neither folder is a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load_script(path: str | Path, name: str | None = None):
    """Execute `path` as a fresh module named `name` (default `_script_<stem>`) and return it."""
    spec = importlib.util.spec_from_file_location(name or f"_script_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
