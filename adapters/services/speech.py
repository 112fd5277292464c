"""espeak-ng, the speech engine of the ``espeak-ng`` model, from Debian's package.

No PyPI package ships the program, so it is installed as PostgreSQL is (``postgres.py``):
``apt-get`` as root, or a clear instruction to anyone else.
"""

from __future__ import annotations

import shutil

from modelyard.adapters.services.process import apt_install

PROGRAM = "espeak-ng"


def ensure_espeak() -> str:
    """The path of ``espeak-ng``, installed from Debian's package first if it is missing."""
    found = shutil.which(PROGRAM)
    if found is None:
        apt_install(PROGRAM)
        found = shutil.which(PROGRAM)
    if found is None:  # installed, yet not on PATH: say so rather than fail later
        raise FileNotFoundError(f"{PROGRAM} was installed but is not on PATH")
    return found
