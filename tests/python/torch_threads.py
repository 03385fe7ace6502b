"""An autouse fixture the torch tests import: torch on one thread while a test runs, its own count
restored after. Their tensors are small, and a second thread of torch's only waits for work, spinning:
on a busy machine, seconds of CPU time a test for nothing. (Torch is left alone where it is not
imported.)"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def torch_on_one_thread():
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
