"""Kernel tests run in Triton's interpreter on the CPU unless CUDA is present.

The variable must be set before Triton is first imported, hence here, at collection.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")
