"""Sub-commands of ``nangua``; see :mod:`nangua.cli`."""
