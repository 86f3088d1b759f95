"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: small CPU graphs run faster than with a contended pool.

    On the 2-core CI machine, torch's default pool spins against other processes and
    made the model tests 4x slower; the previous setting is restored afterwards.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
