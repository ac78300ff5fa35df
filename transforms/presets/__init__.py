"""Every prompt the project sends lives in a YAML file here (one source of truth): the method presets
(``paper.yaml``, ``chat.yaml``), the evaluation prompt (``evaluation.yaml``), and the self-play prompts and seed
puzzles (``self_play.yaml``, ``seed_puzzles.yaml``)."""
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent
