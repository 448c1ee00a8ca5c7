"""Fixtures shared by the unit tests that drive the engine against tests/unit/fakekernel.py: a
fresh fake kernel, and a Context on it with its state in the test's own folder. A module that
needs a kernel with more recorded steps defines its own `kernel`; `ctx` then uses that one."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakekernel import FakeKernel  # noqa: E402


@pytest.fixture
def kernel():
    return FakeKernel()


@pytest.fixture
def ctx(kernel, tmp_path):
    c = kernel.context(str(tmp_path))
    yield c
    c.store.close()
