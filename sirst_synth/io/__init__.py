"""The thin I/O layer: decoding, dataset layouts, the HDF5 bank, manifests, atomic writes."""
