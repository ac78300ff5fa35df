"""Self-play programming puzzles (Haluptzok et al., ICLR 2023): puzzles, prompts, parsing and verification of
generated puzzle/solution pairs (``puzzles``), the job's options (``options``) and its Beam glue (``beam``).
"""
