"""Triton int8 kernels for the ``cost`` preset, beside plain-PyTorch references."""
