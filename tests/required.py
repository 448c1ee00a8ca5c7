"""The one way a test asks for an external program: it fails (never skips) when the program is
missing, naming the Debian package and the bootstrap, so a machine without it cannot pass quietly."""
from __future__ import annotations

import pytest

from netkit import programs


def need(*names: str) -> None:
    """Fail the calling test unless every program in `names` is on the PATH."""
    for name in names:
        if programs.find(name) is None:
            pytest.fail(programs.missing_message(name), pytrace=False)
