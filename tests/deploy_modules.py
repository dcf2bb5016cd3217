"""The Python under ``deploy/`` (generators, lint, conventions), imported by path for tests.

``deploy/`` is no package: its scripts run as ``uv run python deploy/...``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def load_deploy_module(name: str, relative: str) -> ModuleType:
    """``deploy/<relative>``, imported once per test session as ``sundial_deploy_<name>``."""
    module_name = f"sundial_deploy_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, DEPLOY / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up while defined.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
