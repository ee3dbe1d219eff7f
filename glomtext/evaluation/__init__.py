"""The evaluation suite: islands and trees against treebank constituents and discontinuous units.

Modules: ``readers`` (PTB, CoNLL-U/.cupt/.conllulex, NEGRA export, discbracket), ``constituency``
(Kim et al. 2019 protocol and EVALB-style scores, islands against constituents), ``traces``
(discontinuous constituents from PTB traces), ``units`` (discontinuous units and their scores),
``baselines`` (fixed, random and backbone distance trees), ``systems`` (word vectors from a glomtext
model or a backbone), ``pipeline`` (runs every system on the same sentences), ``report`` (tables,
results.json, plots) and ``cli`` (``glomtext eval``).
"""
