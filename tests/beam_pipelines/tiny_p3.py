"""A P3 folder of seven puzzles, written by hand (``data/tiny_p3``): the five tutorial families the solve prefix
needs and one more in the training split, one test family. The drivers' tests that stand in for every step pass
it as ``--p3-dir``, since the drivers read the P3 folder whole before any step."""
from pathlib import Path

TINY_P3 = Path(__file__).resolve().parent / "data" / "tiny_p3"
