"""NVML readings of real cards (name, memory in bytes, compute capability), as NVML reports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    name: str
    total_bytes: int
    used_bytes: int
    compute_capability: tuple[int, int]


T4 = Card("Tesla T4", 15843721216, 283115520, (7, 5))
L4 = Card("NVIDIA L4", 24152899584, 436207616, (8, 9))
A10G = Card("NVIDIA A10G", 24146608128, 474218496, (8, 6))
RTX_4090 = Card("NVIDIA GeForce RTX 4090", 25757220864, 1124073472, (8, 9))
A100_40 = Card("NVIDIA A100-SXM4-40GB", 42505273344, 455081984, (8, 0))
A100_80 = Card("NVIDIA A100-SXM4-80GB", 85899345920, 593362944, (8, 0))
H100 = Card("NVIDIA H100 80GB HBM3", 85520809984, 562036736, (9, 0))
H200 = Card("NVIDIA H200", 150754820096, 620756992, (9, 0))

DRIVER = "550.54.15"
CUDA_DRIVER_VERSION = 12040  # NVML's encoding of CUDA 12.4
