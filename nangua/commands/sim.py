"""``nangua sim``: simulated boards whose serial port is a pseudo-terminal.

``nangua sim miner`` runs the miner with its host link (UART included) in Verilator and prints
the port's path on the first line of its output; any serial program can then use that port as a
board's. It runs until interrupted (Ctrl-C or SIGTERM exits cleanly, status 0).
"""

import signal
import sys
import time

#: One nonce per clock: the most hashes per simulated cycle (the Icarus detect nonce in ~100k).
DEFAULT_UNROLL = 64


def register(subparsers):
    parser = subparsers.add_parser("sim", help="run a simulated board on a pseudo-terminal")
    boards = parser.add_subparsers(dest="board", metavar="BOARD", required=True)
    miner = boards.add_parser(
        "miner", help="the miner with its serial host link",
        description="Run the miner (engine + UART host link) in Verilator. The first line of "
                    "output is the serial port's path; Ctrl-C stops the board.")
    miner.add_argument("--protocol", choices=("native", "icarus"), default="native",
                       help="serial protocol (default native; icarus for cgminer/bfgminer)")
    miner.add_argument("--unroll", type=int, default=DEFAULT_UNROLL,
                       help=f"SHA-256 rounds per clock per compression (default {DEFAULT_UNROLL})")
    miner.add_argument("--cores", type=int, default=1, help="parallel cores (default 1)")
    miner.add_argument("--baud", type=int, default=None,
                       help="line rate in bits per second (default 115200)")
    miner.add_argument("--clk-freq", type=int, default=None,
                       help="simulated clock in Hz (default 16 clocks per bit at 115200 baud)")
    miner.add_argument("--quick-build", action="store_true",
                       help="compile the simulator without optimisation (faster build, "
                            "slower board)")
    miner.set_defaults(func=run_miner)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_miner(args):
    from ..sim.board import SIM_CLK_FREQ, miner_board

    # SIGTERM stops the board (or its build) as Ctrl-C does; and Ctrl-C works even when a shell
    # started us in the background with SIGINT ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    board = None
    try:
        board = miner_board(protocol=args.protocol, unroll=args.unroll, cores=args.cores,
                            clk_freq=args.clk_freq or SIM_CLK_FREQ, baud=args.baud,
                            quick_build=args.quick_build)
        print(f"nangua: building the simulated miner ({args.protocol}, unroll {args.unroll}, "
              f"cores {args.cores}); the first build takes minutes", file=sys.stderr,
              flush=True)
        port = board.start()
        print(port, flush=True)
        print(f"nangua: simulated miner on {port}; Ctrl-C stops it", file=sys.stderr,
              flush=True)
        try:
            while board.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            crashed = False
        else:
            crashed = True
    finally:
        if board is not None:
            board.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if board.cycles_per_second:
        print(f"nangua: simulated {board.cycles} cycles at {board.cycles_per_second:,.0f} "
              f"cycles/s", file=sys.stderr)
    if crashed:
        print(f"nangua: the simulator stopped by itself:\n{board.report}", file=sys.stderr)
        return 1
    return 0
