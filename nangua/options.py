"""Command-line options shared by every command that builds a miner (verilog, demo, sim, bench)."""

from .hdl.miner.core import UNROLL_CHOICES


def add_miner_options(parser, *, unroll=64):
    """Add ``--unroll``, ``--cores``, the optimisation switches and ``--fifo-depth``."""
    group = parser.add_argument_group("miner")
    group.add_argument("--unroll", type=int, default=unroll, choices=UNROLL_CHOICES,
                       help="round stages per compression: 64 = one nonce per clock "
                            f"(default {unroll})")
    group.add_argument("--cores", type=int, default=1,
                       help="pipelines side by side, splitting the nonce range (default 1)")
    group.add_argument("--no-precompute", dest="precompute", action="store_false",
                       help="compute the first hash's rounds 0..2 per nonce, not once per job")
    group.add_argument("--no-fold-constants", dest="fold_constants", action="store_false",
                       help="carry constant message words in registers instead of folding them")
    group.add_argument("--no-early-exit", dest="early_exit", action="store_false",
                       help="run all 64 rounds of the second hash and compare all 256 bits")
    group.add_argument("--fifo-depth", type=int, default=16,
                       help="result FIFO entries (default 16)")


def miner_parameters(args):
    """The keyword arguments of :class:`~nangua.hdl.miner.engine.MinerEngine` from ``args``."""
    return dict(unroll=args.unroll, cores=args.cores, precompute=args.precompute,
                fold_constants=args.fold_constants, early_exit=args.early_exit,
                fifo_depth=args.fifo_depth)
