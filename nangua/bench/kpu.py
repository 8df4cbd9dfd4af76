"""``nangua bench kpu``: KPU cycles and utilisation per layer, and synthesis size per FPGA.

Each benchmark layer runs on the simulated KPU (Amaranth simulator); its output is checked
against the golden model, then the table gives cycles (descriptor accepted to layer done),
MACs of the layer and utilisation = MACs / (cycles × MAC units). Cycle counts are exact and
deterministic. With ``--synth`` YoWASP Yosys also synthesises each configuration; with
``--place`` nextpnr places it on its device (:mod:`.place`).

Usage: ``nangua bench kpu [--configs ecp5,ice40] [--layers ...] [--synth] [--place
[--route] [--cells N]]`` (or ``python -m nangua.bench.kpu`` with the same options); ``--cells``
lists where an iCE40 placement's logic cells go (:mod:`.cells`).
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

from . import parse_list
from ..hdl.kpu import model
from ..hdl.kpu.descriptor import make_layer, pack_activation, pack_batchnorm
from ..hdl.kpu.kpu import Kpu
from ..sim.kpu import run_kpu

__all__ = ["CONFIGS", "LAYERS", "REPORT", "make_kpu", "benchmark_layer", "measure", "register",
           "run", "main"]

#: Gateware configurations: ECP5-85F (144 MAC units), iCE40UP5K (9 MAC units).
#: ECP5: 8 post lanes are the fewest that keep a 16-channel 1×1 layer above 70% (each output
#: takes only 16 MACs). Block RAM (208 DP16KD): the KPU RAM takes 96, the weights 32, the
#: engine 71 (coefficients 32 — 1,152 bits a cycle —, accumulators 24, line buffer 8, ...);
#: a 256 KiB KPU RAM would need 32 more than the device has. DSPs: all 156 MULT18X18D, the
#: post pipeline's wide products first (50), 106 of the 144 MAC products (38 in logic).
#: iCE40: the UP5K's four SPRAMs side by side (64-bit words, 128 KiB) hold the KPU RAM (96 KiB)
#: and above it the weights (32 KiB). max_entries and max_width size the block RAM (30
#: SB_RAM40_4K of 256 × 16 bits): line buffer 32 · 8 words of 128 bits (8), coefficients 72 bits
#: (5), accumulators 25 bits and Σx 17 bits with two read ports each (8), pool row buffer (1),
#: descriptor FIFO 64 bits (4), activation table of the serial post stage (3). 64 entries would
#: double the line buffer. One lane: post one output every 16 cycles (serial_post), weights
#: loaded a byte a cycle; a 3×3 layer of 16 or more channels still keeps the MACs ≥ 85% busy.
CONFIGS = {
    "ecp5": dict(lanes=16, post_lanes=8, ram_word_bytes=16, max_width=64, max_entries=64,
                 ram_bytes=192 * 1024, weight_bytes=64 * 1024, platform="ecp5", dsp_budget=156),
    "ice40": dict(lanes=1, post_lanes=1, ram_word_bytes=8, max_width=64, max_entries=32,
                  single_port_ram=True, serial_post=True, ram_bytes=96 * 1024,
                  weight_bytes=32 * 1024, platform="ice40"),
}
#: Benchmark layers: (kernel, input channels, output channels, width = height).
LAYERS = {
    "conv3x3_c16_o16_16x16": (3, 16, 16, 16),
    "conv1x1_c16_o16_16x16": (1, 16, 16, 16),
    "conv3x3_c32_o16_32x32": (3, 32, 16, 32),
}
#: Goals of issue 3 (utilisation) for the 16×16 layers.
GOALS = {"conv3x3_c16_o16_16x16": 0.85, "conv1x1_c16_o16_16x16": 0.70}
REPORT = Path("build/bench/kpu.json")
#: Simulation keeps RAM and weight memory small (cycle counts do not depend on their size).
SIM_RAM_BYTES = 64 * 1024
SIM_WEIGHT_BYTES = 16 * 1024


def _platform(name):
    if name == "ice40":
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        return ICEBreakerPlatform()
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def make_kpu(config, *, simulation=True):
    """The :class:`Kpu` of a configuration; ``simulation`` uses behavioural multipliers and
    small memories, otherwise the platform's DSP primitives and the full memories."""
    params = dict(CONFIGS[config])
    platform = params.pop("platform")
    if simulation:
        params.update(ram_bytes=SIM_RAM_BYTES, weight_bytes=SIM_WEIGHT_BYTES)
        return Kpu(**params)
    return Kpu(platform=_platform(platform), **params)


def benchmark_layer(name, seed=0):
    """A benchmark layer: (descriptor, weight memory, RAM image), random weights and inputs."""
    kernel, channels, out_channels, size = LAYERS[name]
    rng = random.Random(f"{name}-{seed}")
    weights = bytearray(rng.randrange(256) for _ in range(SIM_WEIGHT_BYTES))
    n = out_channels * channels * kernel * kernel
    bn_addr = (n + 7) // 8 * 8
    weights[bn_addr:bn_addr + 8 * out_channels] = pack_batchnorm(
        [(rng.randint(1, 2 ** 10), 14, rng.randint(-2 ** 10, 2 ** 10))
         for _ in range(out_channels)])
    act_addr = bn_addr + 8 * out_channels
    weights[act_addr:act_addr + 144] = pack_activation(
        [(-2 ** 35 + 2 ** 20 * s, 1 + s, 4, 8 * s) for s in range(16)])
    d = make_layer(in_channels=channels, out_channels=out_channels, width=size, height=size,
                   kernel_size=kernel, src_addr=0, dst_addr=512, weights_addr=0,
                   bn_addr=bn_addr, act_addr=act_addr, arg_x=-128, arg_w=-3,
                   arg_add=kernel * kernel * 128 * 3, pad_value=3)
    ram = bytearray(rng.randrange(256) for _ in range(SIM_RAM_BYTES))
    return d, bytes(weights), ram


def measure(config, name):
    """Run one benchmark layer on a configuration; returns a result dict.

    Raises
    ------
    AssertionError
        If the gateware's RAM differs from the golden model's afterwards.
    """
    kpu = make_kpu(config)
    d, weights, ram = benchmark_layer(name)
    started = time.monotonic()
    result = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=2_000_000)
    seconds = time.monotonic() - started
    expected = bytearray(ram)
    model.run_layer(d, expected, weights)
    if result.ram != expected:
        raise AssertionError(f"{config} {name}: gateware output differs from the model")
    kernel, channels, out_channels, size = LAYERS[name]
    macs = kernel * kernel * channels * out_channels * size * size
    cycles = result.layers[0].cycles
    units = kpu.engine.mac_units
    return {"config": config, "layer": name, "cycles": cycles, "macs": macs,
            "mac_units": units, "utilisation": macs / (cycles * units),
            "goal": GOALS.get(name), "sim_seconds": round(seconds, 1)}


#: Yosys scripts. The MAC array instantiates its DSP primitives itself; every other multiplier
#: (batch-norm, activation, address arithmetic) is kept out of the DSPs (``-nodsp`` on ECP5;
#: synth_ice40 infers none without ``-dsp``), so the DSPs go to the MAC units. ``-spram`` lets
#: Yosys use SPRAM for single-port memories.
SYNTH_SCRIPTS = {
    "ice40": "synth_ice40 -top top -spram",
    "ecp5": "synth_ecp5 -top top -nodsp",
}


def synthesis(config, workdir, *, timeout=7200):
    """Yosys cell counts of a configuration with its platform's primitives (columns of
    :data:`nangua.bench.synth.COLUMNS`), plus the device and the seconds Yosys took.

    Raises
    ------
    RuntimeError
        If Yosys fails (its log is kept in ``workdir``).
    """
    from .synth import synthesize
    family = CONFIGS[config]["platform"]
    return synthesize(make_kpu(config, simulation=False), family, workdir,
                      script=SYNTH_SCRIPTS[family], timeout=timeout)


def register(subparsers):
    parser = subparsers.add_parser("kpu", help="KPU cycles/utilisation per layer, synthesis",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser):
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated configurations among {', '.join(CONFIGS)}")
    parser.add_argument("--layers", default=",".join(LAYERS),
                        help=f"comma-separated layers among {', '.join(LAYERS)}")
    parser.add_argument("--synth", action="store_true",
                        help="also synthesise each configuration (slow)")
    parser.add_argument("--place", action="store_true",
                        help="also place each configuration with nextpnr on its device, in a "
                             "three-pin harness (slower: does it fit, and at what clock)")
    parser.add_argument("--route", action="store_true",
                        help="with --place, also route (a real Fmax; minutes on iCE40, hours "
                             "on ECP5)")
    parser.add_argument("--cells", type=int, default=0, metavar="N",
                        help="with --place, also list the N signals taking the most iCE40 "
                             "logic cells (an approximate attribution, nangua.bench.cells)")
    parser.add_argument("--report", default=str(REPORT), help=f"JSON report (default {REPORT})")


def print_cells(netlist_path, n):
    """The ``n`` signals of a placed iCE40 netlist taking the most logic cells."""
    from .cells import cell_count, logic_cells
    signals = logic_cells(json.loads(Path(netlist_path).read_text()))
    total = sum(cell_count(kinds) for kinds in signals.values())
    print(f"  logic cells by signal (approximate, {total} in all):")
    for name, kinds in sorted(signals.items(), key=lambda item: -cell_count(item[1]))[:n]:
        split = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        print(f"  {cell_count(kinds):6} {name}  ({split})")


def run(args):
    if args.route and not args.place:
        raise ValueError("--route needs --place")
    if args.cells and not args.place:
        raise ValueError("--cells needs --place")
    configs = parse_list(args.configs, CONFIGS, "configuration")
    layers = parse_list(args.layers, LAYERS, "layer")
    report = {"layers": [], "synthesis": {}}
    print(f"{'config':6} {'layer':24} {'cycles':>8} {'MACs':>9} {'units':>5} {'util':>6} goal")
    for config in configs:
        for name in layers:
            r = measure(config, name)
            report["layers"].append(r)
            goal = f"≥{r['goal']:.0%}" if r["goal"] else ""
            print(f"{config:6} {name:24} {r['cycles']:8} {r['macs']:9} {r['mac_units']:5} "
                  f"{r['utilisation']:6.1%} {goal}", flush=True)
    if args.synth:
        for config in configs:
            size = synthesis(config, Path(args.report).parent / f"kpu-{config}")
            report["synthesis"][config] = size
            print(f"{config}: " + ", ".join(f"{k} {v}" for k, v in size.items()), flush=True)
    if args.place:
        from .place import place
        report["placement"] = {}
        for config in configs:
            family = CONFIGS[config]["platform"]
            result = place(make_kpu(config, simulation=False), family,
                           Path(args.report).parent / f"kpu-place-{config}",
                           script=SYNTH_SCRIPTS[family], route=args.route)
            report["placement"][config] = result
            used = ", ".join(f"{bel} {n}/{total} ({n / total:.0%})"
                             for bel, (n, total) in sorted(result["utilisation"].items()))
            verdict = ("DOES NOT FIT" if not result["fits"]
                       else "placed and routed" if result["routed"] else "placed")
            estimate = "Fmax" if result["routed"] else "estimated Fmax"
            print(f"{config}: {verdict}; {used}; {estimate} {result['fmax_mhz']} MHz",
                  flush=True)
            if args.cells and family == "ice40":
                print_cells(Path(args.report).parent / f"kpu-place-{config}" / "top.json",
                            args.cells)
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nangua.bench.kpu",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
