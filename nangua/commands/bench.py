"""``nangua bench``: benchmarks that print numbers and write JSON reports under build/bench."""


def register(subparsers):
    parser = subparsers.add_parser("bench", help="run a benchmark (long: synthesis sweeps)")
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    from ..bench import miner
    miner.register(benches)
    from ..bench import sim
    sim.register(benches)
