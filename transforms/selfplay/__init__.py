"""Self-play programming puzzles as the ICLR 2023 paper runs them ("Language Models Can Teach Themselves to
Program Better", Haluptzok, Bowers, Kalai; code: microsoft/PythonProgrammingPuzzles, ICLR2023/src).

This package owns self-play: the pure logic of one round (no Beam, no engine), its options and its Beam glue:

- ``p3``             P3 (``puzzles.json`` + ``split.json``): the train-family pool and the 228 test puzzles.
- ``source``         text-level slicing of puzzles and solutions, as the reference cuts them.
- ``preset``         the paper's strings (``transforms/presets/self_play_paper.yaml``) as typed data.
- ``generate``       the generation prompt (f-only, f1..fk, token-budgeted) and ``strip_puzzle``.
- ``filters``        the reference's puzzle filters, each with its own reason code.
- ``puzzle_fingerprint``  a puzzle up to formatting and renaming: the filter's refusal of P3 test puzzles.
- ``solve``          the solve prompt, completion -> ``g``, and choosing verified solutions.
- ``training_text``  the raw training text (f, g, ``assert f(g())``), dedup and cap.
- ``merge``          the training set of loop round r: the solved puzzles of rounds 0..r merged per puzzle,
                     deduplicated and capped (the reference's preprocess.py over every iteration's data).
- ``evaluation``     pass@k for every k, and the reference's "solved within the first k attempts" count.
- ``projection``     GPU-hours of one paper-scale round from measured token counts.
- ``puzzles``        the project's own seed puzzles and its f/g prompt format (the ``seed`` preset), canonical
                     puzzles and the parsing of generated f/g pairs.
- ``options``, ``beam``  the self-play job's options and its Beam stages.

Every step that needs code executed is split in two pure halves: one builds what to execute (programs or
candidate answers), the other reads the plain-data results. Execution itself belongs to ``transforms.execute``.
"""
