"""Process settings that must be in place before torch is imported (aerocolor's package import
sets them; a value already in the environment always wins).

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep instead of spinning between parallel regions.
  On a machine shared with other jobs, spinning threads made 2-thread inference and training
  10-15x slower; on a quiet machine passive waiting costs about 4%. onnxruntime's own thread
  pool follows the same setting (see :func:`aerocolor.infer.onnx.session_options`).
- ``THP_MEM_ALLOC_ENABLE=1``: torch's CPU allocator backs large tensors with transparent huge
  pages: tile activations of tens of MB otherwise become fresh mmaps with a page fault per 4 KB.

Where bfloat16 runs natively on the CPU (:func:`cpu_bf16`), torch inference and training use it
there, as on a GPU.

Two C heap settings apply at run time instead: :func:`map_large_allocations` (set when the ONNX
backend is loaded for the CPU) and :func:`release_free_memory` (after exporting to ONNX in memory).
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

PROCESS_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}


def set_process_defaults() -> dict[str, str]:
    """Set each of :data:`PROCESS_DEFAULTS` not already in the environment; returns those set."""
    added = {k: v for k, v in PROCESS_DEFAULTS.items() if k not in os.environ}
    os.environ.update(added)
    return added


ONNX_MMAP_THRESHOLD = 4 << 20  # bytes


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def map_large_allocations(threshold: int = ONNX_MMAP_THRESHOLD) -> bool:
    """Serve every C heap allocation of at least ``threshold`` bytes with its own mapping,
    returned to the system when freed (glibc's ``M_MMAP_THRESHOLD``; unless
    ``MALLOC_MMAP_THRESHOLD_`` is set; False where it does not apply).

    glibc otherwise raises that threshold to the largest block freed so far (up to 32 MB), after
    which the 4-32 MB arrays of each tile come from the heap, whose free holes stay resident
    as tile shapes change. For the ONNX backend, streaming a 16384 px wide raster, the peak fell by
    100-120 MB at the same speed; torch, whose tensors come from huge pages, ran 12% slower
    with it, so only the ONNX backend sets it."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). After a one-off burst of small allocations, such as exporting a model to ONNX in
    memory (44 MB freed after the bundled model's export), they would otherwise stay counted
    in the process's resident memory."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


# x86 CPU flags of native bfloat16 arithmetic (AVX512-BF16: Zen 4 and later, Cooper Lake, Sapphire
# Rapids and later; AMX-BF16: Sapphire Rapids and later)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (an x86 CPU with AVX512-BF16 or AMX; read from
    ``/proc/cpuinfo``). There oneDNN runs bfloat16 convolutions about twice as fast as float32
    (measured on a 2-core AMD EPYC with AVX512-BF16: 1.7x a whole inference pass, 1.3-1.9x a
    training step); elsewhere bfloat16 is emulated and slower, so float32 stays the default.
    ``AEROCOLOR_CPU_BF16=0`` (or 1) overrides the detection."""
    forced = os.environ.get("AEROCOLOR_CPU_BF16")
    if forced is not None:
        return forced.strip().lower() not in ("0", "", "false", "no", "off")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False
