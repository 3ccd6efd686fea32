"""sirst-synth: SIRST-5K style synthesis of infrared small-target datasets.

The library core (noise bank, blend, rotation, targets, metrics) works on numpy arrays and
imports neither torch nor anything that touches files; `sirst_synth.io` moves bytes and
`sirst_synth.train` holds the torch parts.
"""

__version__ = "0.1.0"
