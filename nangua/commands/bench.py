"""``nangua bench``: benchmarks that print numbers and write JSON reports under build/bench."""

import importlib

#: Benchmark modules under :mod:`nangua.bench`, each with ``register(subparsers)``.
BENCHES = ["miner", "kpu", "sim"]


def register(subparsers):
    parser = subparsers.add_parser("bench", help="run a benchmark (long: synthesis sweeps)")
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in BENCHES:
        importlib.import_module(f"nangua.bench.{name}").register(benches)
