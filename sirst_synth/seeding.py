"""Per-item random generators: results never depend on worker count or order."""

from __future__ import annotations

import hashlib

import numpy as np


def key_int(key: object) -> int:
    """A stable 64-bit integer for a key (str hashing is salted per process; this is not)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
        return int(key)
    return int.from_bytes(hashlib.sha256(str(key).encode("utf-8")).digest()[:8], "little")


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """The generator of one item, derived from (seed, keys) with ``numpy.random.SeedSequence``."""
    return np.random.default_rng(
        np.random.SeedSequence([key_int(seed), *(key_int(k) for k in keys)])
    )
