"""Install the mrcnn package: `pip install -e .`"""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [line.strip() for line in (here / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

setup(
    name="mrcnn",
    version="0.1.0",
    description="Mask R-CNN for Keras 3 and TensorFlow 2, compatible with Matterport's API and weights",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mrcnn", "mrcnn.*"]),
    python_requires=">=3.11",
    install_requires=requirements,
    extras_require={"test": ["pytest>=9.2", "nbclient>=0.11", "nbformat>=5.11", "ipykernel>=7.4"],
                    # KERAS_BACKEND=jax (TensorFlow stays the default backend); add jax[cuda12] for GPUs
                    "jax": ["jax>=0.10.2"],
                    # MaskRCNN.export(format="onnx") and running its file (tested with these).
                    "onnx": ["tf2onnx>=1.17.0", "onnxruntime>=1.32.0"]},
)
