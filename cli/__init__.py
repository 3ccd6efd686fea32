"""The `sirst-synth` command line: parse flags, call the library, print rich output."""
