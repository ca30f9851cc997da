"""The bottom layer: what every other layer shares and nothing here imports from above.

``types`` (array aliases and conventions), ``rng`` (derived randomness), ``state`` (NetState and
the optimiser), ``objective`` (the Objective protocol), ``errors`` (ConfigError) and
``compilation`` (compile-once helpers). Layers above, bottom to top: ``diffusion`` / ``losses`` /
``plots``, ``models``, ``data``, ``objectives``, ``train``, ``eval``, then the assembly modules
(``config``, ``build``, ``benchmarks``, ``snapshot``, ``quickstart``) and ``cli``; no import points up
(tests/test_layers.py).
"""
