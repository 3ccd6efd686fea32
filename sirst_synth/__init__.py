"""sirst-synth: SIRST-5K style synthesis of infrared small-target datasets.

The library core (noise bank, blend, rotation, targets, metrics) works on numpy arrays and
imports neither torch nor anything that touches files; `sirst_synth.io` moves bytes and
`sirst_synth.train` holds the torch parts.
"""

__version__ = "0.1.0"

# The Python API is ``sirst_synth.api`` (docs/api.md): ``import sirst_synth.api as ss``. Its
# functions are not re-exported here, where the names generate, train and study are the
# subpackages that implement them. Neither torch nor matplotlib is imported until used.
from sirst_synth.synthesizer import Synthesizer  # noqa: E402

__all__ = ["Synthesizer", "__version__"]
