"""The papers' procedures, one implementation each, used by the pages, the CLI, ``reproduce`` and the tests.

- :mod:`.defensive`: defensive distillation (Papernot et al. 2016): pipeline, *Break it*, T sweep;
- :mod:`.bss`: boundary-supporting samples (Heo et al. 2019) step by step, for the pages.

The training objectives themselves are :mod:`distill_core.methods`; MTARD's study is
:mod:`distill_core.reproduce.mtard`.
"""
