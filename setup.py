"""Maps the repository root onto the ``modelyard`` namespace.

The layers live as top-level folders (``domain/``, ``api/`` …) as the design card asks,
yet must install as ``modelyard.domain``, ``modelyard.api`` … so that nothing named
``api`` or ``kernels`` lands in site-packages. pyproject.toml cannot compute the package
list from the folders, so this file does, once, at build time.
"""

from setuptools import find_packages, setup

LAYERS = ("domain", "projections", "adapters", "api", "workers", "kernels", "cli")

packages = ["modelyard"] + [
    f"modelyard.{name}"
    for name in find_packages(where=".", include=[*LAYERS, *(f"{layer}.*" for layer in LAYERS)])
]

setup(packages=packages, package_dir={"modelyard": "."})
