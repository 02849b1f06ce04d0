"""Training and evaluation math that gives the same bits on any x86-64 CPU with AVX2.

torch picks its CPU kernels by the processor it runs on (AVX512 here, AVX2 on many laptops), and
MKL does the same for matrix products; either choice changes the last bits of a float, and over
a few hundred training steps those bits change which held-out items a testbed model solves. The
thread count changes the order of reductions the same way. So the testbed ladder and
self-awareness training run with:

- ``ATEN_CPU_CAPABILITY=avx2``: torch's own kernels at the AVX2 level (about 4% slower here);
- ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility at the AVX2 level (about 35%
  slower training steps here, on an AVX512 Xeon); MKL documents it for Intel and compatible
  processors, so an AMD CPU may still differ in the last bits;
- a fixed number of torch threads;
- attention through scaled_dot_product_attention's math backend, not its CPU flash kernel, whose
  backward packs for the real CPU's ISA (with the AVX2 pin on an AVX512 machine it fails:
  "pack_vnni2 is only supported when avx512 is supported") and so cannot be pinned.

Both variables are read at the first computation, not at import, so `pin_cpu_math` works after
``import torch`` but must run before the process computes anything. Serving (the backends)
does not pin: it keeps the fastest kernels.
"""

from __future__ import annotations

import os

CPU_MATH_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def pin_cpu_math(threads: int) -> None:
    """Pin the kernels and thread count of this process (see the module docstring)."""
    os.environ.update(CPU_MATH_ENV)
    import torch

    torch.set_num_threads(threads)
    torch.backends.cuda.enable_flash_sdp(False)  # despite the name, also what the CPU's sdpa dispatch consults
