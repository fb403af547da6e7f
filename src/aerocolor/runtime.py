"""Process settings that must be in place before torch is imported (aerocolor's package import
sets them; a value already in the environment always wins).

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep instead of spinning between parallel regions.
  On a machine shared with other jobs, spinning threads made 2-thread inference and training
  10-15x slower; on a quiet machine passive waiting costs about 4%. onnxruntime's own thread
  pool follows the same setting (see :func:`aerocolor.infer.onnx.session_options`).
- ``THP_MEM_ALLOC_ENABLE=1``: torch's CPU allocator backs large tensors with transparent huge
  pages: tile activations of tens of MB otherwise become fresh mmaps with a page fault per 4 KB.
"""

from __future__ import annotations

import os

PROCESS_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}


def set_process_defaults() -> dict[str, str]:
    """Set each of :data:`PROCESS_DEFAULTS` not already in the environment; returns those set."""
    added = {k: v for k, v in PROCESS_DEFAULTS.items() if k not in os.environ}
    os.environ.update(added)
    return added
