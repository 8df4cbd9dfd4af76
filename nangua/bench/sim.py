"""``nangua bench sim``: simulated clock cycles and hashes per second, per simulator and unroll.

Four ways to simulate the miner, each measured on unroll 64, 8 and 1 for a fixed wall-clock
budget while the engine scans a job that never hits:

* ``amaranth``: the engine (``MinerEngine``) in Amaranth's Python simulator, clocked from an async
  testbench;
* ``icarus`` and ``verilator``: the engine's generated Verilog under cocotb (C++ clock, no Python
  per cycle; Verilator's C++ compiled with optimisation);
* ``board``: the whole simulated board of ``nangua sim miner`` (engine + native host link + UART,
  Verilator with the C++ harness), loaded over its pty; hashes from its status frame.

Prints a table and writes ``build/bench/sim.json``. The goal of issue 4: Verilator at least 100
times the Amaranth simulator on the unroll-64 engine. The first run builds every Verilator model
(minutes each on a 2-core machine; cached under ``build/sim``).
"""

import json
import os
import tempfile
import time
from pathlib import Path

from . import parse_list

#: What is measured, in table order.
UNROLLS = (64, 8, 1)
SIMULATORS = ("amaranth", "icarus", "verilator", "board")
REPORT = Path("build/bench/sim.json")
#: The issue's goal: Verilator over Amaranth on the unroll-64 engine.
GOAL_SPEEDUP = 100
#: Wall-clock seconds each measurement runs after warm-up.
DEFAULT_SECONDS = 10.0


def register(subparsers):
    parser = subparsers.add_parser(
        "sim", help="simulated cycles/s and hashes/s per simulator and unroll",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--unroll", default=",".join(map(str, UNROLLS)),
                        help="comma-separated unroll values (default 64,8,1)")
    parser.add_argument("--simulators", default=",".join(SIMULATORS),
                        help=f"comma-separated among {', '.join(SIMULATORS)} (default all)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help=f"wall-clock seconds per measurement (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--report", default=str(REPORT), help=f"JSON report (default {REPORT})")
    parser.set_defaults(func=run)


def _never_hits():
    from ..hdl.miner.model import MASK, Job
    return Job((0,) * 8, (0,) * 3, target=0, nonce_start=0, nonce_end=MASK, job_id=1)


def measure_amaranth(unroll, seconds):
    """Cycles, wall seconds and hashes of the engine in Amaranth's simulator."""
    from amaranth.sim import Simulator

    from ..hdl.miner.engine import MinerEngine
    from ..sim.engine_tb import put_job

    engine = MinerEngine(unroll=unroll)
    figures = {}

    async def testbench(ctx):
        ctx.set(engine.result.ready, 1)
        await put_job(ctx, engine, _never_hits())
        await ctx.tick().repeat(300)   # pipeline fill
        hashes = ctx.get(engine.hashes)
        cycles, chunk = 0, 4
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            await ctx.tick().repeat(chunk)
            cycles += chunk
            if elapsed < seconds / 4:
                chunk *= 2
        figures.update(cycles=cycles, seconds=time.perf_counter() - start,
                       hashes=ctx.get(engine.hashes) - hashes)

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return figures


def measure_cocotb(simulator, unroll, seconds):
    """Cycles, wall seconds and hashes of the engine's Verilog under cocotb on ``simulator``."""
    from ..hdl.miner.engine import MinerEngine
    from ..sim import runner

    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "figures.json"
        runner.run(MinerEngine(unroll=unroll), "nangua.sim.benches.throughput",
                   simulator=simulator, toplevel=f"miner_engine_u{unroll}", quick_build=False,
                   extra_env={"NANGUA_BUDGET": str(seconds), "NANGUA_REPORT": str(report)})
        return json.loads(report.read_text())


def measure_board(unroll, seconds):
    """Cycles and hashes per wall second of ``nangua sim miner``'s board (native protocol)."""
    from ..link import NativeClient
    from ..sim.board import RawPort, miner_board

    board = miner_board(protocol="native", unroll=unroll)
    with board:
        with RawPort(board.port) as port:
            client = NativeClient(port, timeout=120)
            client.load_job(_never_hits())
            first = client.status()
            start = time.perf_counter()
            time.sleep(seconds)
            last = client.status()
            elapsed = time.perf_counter() - start
    # The harness's cycle rate covers its whole run, which never idles: the clock always runs.
    return {"cycles": board.cycles, "seconds": board.seconds,
            "hashes": last.hashes - first.hashes, "hash_seconds": elapsed}


def measure(simulator, unroll, seconds):
    if simulator == "amaranth":
        figures = measure_amaranth(unroll, seconds)
    elif simulator == "board":
        figures = measure_board(unroll, seconds)
    else:
        figures = measure_cocotb(simulator, unroll, seconds)
    figures["cycles_per_second"] = figures["cycles"] / figures["seconds"]
    figures["hashes_per_second"] = figures["hashes"] / figures.get("hash_seconds",
                                                                   figures["seconds"])
    return figures


def run(args):
    unrolls = parse_list(args.unroll, UNROLLS, "unroll", int)
    simulators = parse_list(args.simulators, SIMULATORS, "simulator")
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, not {args.seconds}")
    report_path = Path(args.report)
    report = {"seconds_per_measurement": args.seconds, "results": []}
    print(f"{'simulator':<10} {'unroll':>6} {'cycles/s':>12} {'hashes/s':>12}", flush=True)
    for unroll in unrolls:
        for simulator in simulators:
            figures = measure(simulator, unroll, args.seconds)
            report["results"].append({"simulator": simulator, "unroll": unroll, **figures})
            print(f"{simulator:<10} {unroll:>6} {figures['cycles_per_second']:>12,.0f} "
                  f"{figures['hashes_per_second']:>12,.0f}", flush=True)
    rates = {(r["simulator"], r["unroll"]): r["cycles_per_second"] for r in report["results"]}
    if ("amaranth", 64) in rates and ("verilator", 64) in rates:
        speedup = rates["verilator", 64] / rates["amaranth", 64]
        report["verilator_over_amaranth_unroll64"] = speedup
        verdict = "meets" if speedup >= GOAL_SPEEDUP else "misses"
        print(f"Verilator / Amaranth on the unroll-64 engine: {speedup:,.0f}x "
              f"({verdict} the {GOAL_SPEEDUP}x goal)")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {os.path.relpath(report_path)}")
    return 0
