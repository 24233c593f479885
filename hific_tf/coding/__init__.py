"""Coding images to files: HiFiC's compress and decompress, the hyperprior, the coding tables,
the range coder, integer synthesis, tiling and the `.hfc` file format."""
