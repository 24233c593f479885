"""hific-tf: HiFiC (Mentzer et al., NeurIPS 2020) in TensorFlow 2 on tensorflow-compression."""

__version__ = "0.2.0"
