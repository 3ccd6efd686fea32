"""`python -m sirst_synth` runs the command line (also what torchrun starts)."""

from sirst_synth.cli.app import main

if __name__ == "__main__":
    main()
