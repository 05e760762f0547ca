from setuptools import find_packages, setup

setup(
    name="aefs-keras",
    version="0.1.0",
    description=(
        "Adaptive early feature selection (AEFS) and MLCC for CTR prediction, "
        "as Keras 3 layers on TensorFlow."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["aefs_keras", "aefs_keras.*"]),
    python_requires=">=3.10",
    # Pinned to the tested minor versions: CTRModel overrides private Keras
    # methods (_maybe_symbolic_build) and the serving export relies on
    # TensorFlow's SavedModel layout, both of which change between minors.
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "keras-rs>=0.4,<0.5",
        "numpy",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "hypothesis", "tensorboard", "pyarrow", "pyyaml", "matplotlib"],
        "bench": ["pyyaml", "matplotlib", "pandas"],
        "parquet": ["pyarrow"],
    },
    entry_points={"console_scripts": ["aefs-keras=aefs_keras.cli:main"]},
)
