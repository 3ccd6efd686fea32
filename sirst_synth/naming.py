"""Names and L_Neg groups of development samples: one home for generate and online synthesis.

A sample's file stem reads back as (source stem, pass, what was made); its group is what the
L_Neg loss and the group sampler keep together: the 4 rotations of one target of one pass, or
a sample alone (Noise2Noise-only and copy-paste samples have nothing to group with).
"""

from __future__ import annotations

import re

#: A development sample's stem: source stem, pass, then target and angle, ``n2n`` or ``paste``.
SAMPLE_NAME = re.compile(r"(?P<base>.+)_syn\d+_(?:t\d+_r\d+|n2n|paste)")


def sample_name(stem: str, pass_index: int, mode: str, target: int | None, angle: int) -> str:
    """Development file stem of a sample of ``mode`` (sirst5k, n2n, paste)."""
    if mode == "sirst5k":
        return f"{stem}_syn{pass_index}_t{target}_r{angle}"
    return f"{stem}_syn{pass_index}_{mode}"


def sample_group(stem: str, pass_index: int, mode: str, target: int | None) -> str:
    """The L_Neg group: a target's rotations share ``stem:pass:target``; an n2n or paste sample
    is alone in ``stem:pass:n2n`` / ``stem:pass:paste``."""
    return f"{stem}:{pass_index}:{target if mode == 'sirst5k' else mode}"
