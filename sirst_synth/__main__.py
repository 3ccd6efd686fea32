"""`python -m sirst_synth` runs the command line (also what torchrun starts)."""

from sirst_synth.cli.main import main

if __name__ == "__main__":
    main()
