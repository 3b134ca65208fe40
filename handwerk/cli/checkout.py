"""Tooling that lives beside the package in a source checkout, not in the installed runtime.

``handwerk bench`` and ``handwerk demo-data`` use ``tooling/`` (benchmark, demo generator),
which the production image does not ship. From a checkout (an editable install) they find it
next to the package; elsewhere they say where to run them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import handwerk


class NotACheckout(RuntimeError):
    """The command needs ``tooling/`` from a source checkout."""


def import_tooling(module: str) -> ModuleType:
    """Import ``tooling.<module>`` from the checkout this package was installed from."""
    root = Path(handwerk.__file__).resolve().parents[1]
    if not (root / "tooling" / "__init__.py").is_file():
        raise NotACheckout(f"this command needs the source checkout's tooling/ folder (not in "
                           f"{root}); run it from a clone installed with `make install`")
    if str(root) not in sys.path:
        sys.path.append(str(root))  # appended: never shadows the installed package
    return importlib.import_module(f"tooling.{module}")
