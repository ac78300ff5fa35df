"""The Inverse-Instruct method (code -> instruction -> self-judged -> best kept).

``prompts`` renders every prompt from the presets in ``transforms/presets/`` (``paper``, ``chat``, user files),
``options`` holds the method's options and plain configs, ``requests`` builds the engine requests and reads
their results, ``postfilters`` rejects bad candidates, ``scoring`` computes p(Yes)/(p(Yes)+p(No)) (``exact``
and ``reference``), ``selection`` keeps the best candidate per snippet, and ``beam`` holds ``Summarize``,
``SelfEvaluate`` and ``Select``.
"""
