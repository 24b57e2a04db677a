"""Small helpers every stage uses: logging, torch threads and seeds, device choice."""
from __future__ import annotations

import logging
import os
import random
import signal
import sys

import numpy as np
import torch


def setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", force=True)


def setup_torch(threads: int, seed: int = 0) -> None:
    """Fixed thread count and seeds: CPU results are reproducible for a given thread count."""
    torch.set_num_threads(max(1, threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def crash_point(name: str) -> None:
    """Fault injection for the failure tests: SIGKILL this process when CURVMEM_CRASH_AT names
    this point (e.g. `train:step5`, `write:model.safetensors`; several, comma-separated). A no-op otherwise."""
    if name in os.environ.get("CURVMEM_CRASH_AT", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
