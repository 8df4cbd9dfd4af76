"""``nangua bench miner``: nonces per clock from simulation, and synthesis size, per configuration.

For every unroll and optimisation variant: the engine scans a job in the Amaranth simulator and
the hash counter gives nonces per clock; YoWASP Yosys synthesises the whole miner (core + engine +
result FIFO) for iCE40UP5K and ECP5-85F. Results are cached per configuration in the JSON report,
keyed by a hash of the design's RTLIL, so an interrupted sweep resumes where it stopped and a
changed design is measured again (``--fresh`` starts over).
"""

import hashlib
import json
import time
from pathlib import Path

from amaranth.back import rtlil

from . import parse_list
from ..hdl.miner.core import UNROLL_CHOICES
from .synth import FAMILIES, synthesize

#: Optimisation variants measured for every unroll.
VARIANTS = {
    "all": dict(precompute=True, fold_constants=True, early_exit=True),
    "none": dict(precompute=False, fold_constants=False, early_exit=False),
    "no-precompute": dict(precompute=False, fold_constants=True, early_exit=True),
    "no-fold": dict(precompute=True, fold_constants=False, early_exit=True),
    "no-early-exit": dict(precompute=True, fold_constants=True, early_exit=False),
}
REPORT = Path("build/bench/miner.json")
#: Goals of issue 2 for unroll 64 with every optimisation, on ECP5.
ECP5_FF_GOAL = 70_000
ECP5_LUT_GOAL = 60_000  # LUT4 + 2 * CCU2C
ICE40_LUTS = 5280
ICE40_SPARE = 0.10


def register(subparsers):
    parser = subparsers.add_parser(
        "miner", help="nonces/clock and LUT/carry/FF counts of the miner per configuration",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--unroll", default=",".join(map(str, UNROLL_CHOICES)),
                        help="comma-separated unroll values (default all)")
    parser.add_argument("--variants", default="all,none",
                        help=f"comma-separated variants among {', '.join(VARIANTS)} "
                             "(default all,none)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated FPGA families (default ice40,ecp5)")
    parser.add_argument("--no-synth", dest="synth", action="store_false",
                        help="simulation only")
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument("--report", default=str(REPORT), help=f"JSON report (default {REPORT})")
    parser.set_defaults(func=run)


def design_fingerprint(component):
    """A short hash of the component's RTLIL: what a cached measurement is valid for."""
    text = rtlil.convert(component, name="top", emit_src=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure_nonces_per_clock(unroll, switches, nonces=None):
    """Scan a job with an impossible target; nonces per clock between first and last hash."""
    from ..hdl.miner.engine import MinerEngine
    from ..hdl.miner.model import Job
    from ..sim.engine_tb import run_engine

    engine = MinerEngine(unroll=unroll, **switches)
    # Enough nonces for a steady state, without making the slow configurations crawl.
    nonces = nonces or max(32, 4 * unroll)
    job = Job((0,) * 8, (0,) * 3, target=0, nonce_start=0, nonce_end=nonces - 1)
    started = time.process_time()
    run = run_engine(engine, [job])
    seconds = time.process_time() - started
    (first_clock, first), (last_clock, last) = run.hash_counts[1], run.hash_counts[-1]
    return {
        "nonces_per_clock": (last - first) / (last_clock - first_clock),
        "sim_clocks": run.cycle,
        "sim_clocks_per_cpu_second": round(run.cycle / seconds, 1),
    }


def run(args):
    from ..hdl.miner.engine import MinerEngine

    unrolls = parse_list(args.unroll, UNROLL_CHOICES, "unroll", int)
    variants = parse_list(args.variants, list(VARIANTS), "variant")
    families = parse_list(args.families, list(FAMILIES), "family") if args.synth else []
    report_path = Path(args.report)
    report = {} if args.fresh or not report_path.exists() else json.loads(report_path.read_text())
    report_path.parent.mkdir(parents=True, exist_ok=True)

    def save():
        report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    for unroll in unrolls:
        for variant in variants:
            key = f"unroll{unroll}-{variant}"
            # Cached figures count only for the very design they were measured on.
            design = design_fingerprint(MinerEngine(unroll=unroll, **VARIANTS[variant]))
            entry = report.get(key, {})
            if entry.get("design") != design:
                entry = report[key] = {"unroll": unroll, "variant": variant, "design": design,
                                       **VARIANTS[variant]}
            if "nonces_per_clock" not in entry:
                entry.update(measure_nonces_per_clock(unroll, VARIANTS[variant]))
                save()
            for family in families:
                if family not in entry:
                    print(f"synthesising {key} for {FAMILIES[family][0]} ...", flush=True)
                    engine = MinerEngine(unroll=unroll, **VARIANTS[variant])
                    entry[family] = synthesize(engine, family,
                                               Path("build/bench/miner") / key / family)
                    save()
            print(_row(entry, families), flush=True)

    print()
    print(_table(report, families))
    print()
    for line in _goals(report):
        print(line)
    print(f"\nreport: {report_path}")
    return 0


def _row(entry, families):
    parts = [f"unroll {entry['unroll']:>2} {entry['variant']:<14}",
             f"{entry['nonces_per_clock']:.5f} nonces/clock"]
    for family in families:
        cells = entry.get(family, {})
        parts.append(f"{family}: " + ", ".join(f"{k} {cells[k]:,}" for k in ("LUT4", "carry", "FF")
                                                if k in cells))
    return " | ".join(parts)


def _table(report, families):
    header = ["config", "nonces/clk"]
    for family in families:
        header += [f"{family} LUT4", f"{family} carry", f"{family} FF"]
    rows = [header]
    for key in sorted(report, key=lambda k: (report[k]["unroll"], report[k]["variant"])):
        entry = report[key]
        row = [key, f"{entry['nonces_per_clock']:.5f}"]
        for family in families:
            cells = entry.get(family, {})
            row += [f"{cells[c]:,}" if c in cells else "-" for c in ("LUT4", "carry", "FF")]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def _goals(report):
    lines = []
    best = report.get("unroll64-all", {}).get("ecp5")
    if best:
        luts = best["LUT4"] + 2 * best["carry"]
        lines.append(f"ECP5 unroll 64, all optimisations: {best['FF']:,} FF (goal < "
                     f"{ECP5_FF_GOAL:,}: {'met' if best['FF'] < ECP5_FF_GOAL else 'MISSED'}), "
                     f"LUT4 + 2*CCU2C = {luts:,} (goal < {ECP5_LUT_GOAL:,}: "
                     f"{'met' if luts < ECP5_LUT_GOAL else 'MISSED'})")
    naive = report.get("unroll64-none", {}).get("ecp5")
    if best and naive:
        for column in ("LUT4", "carry", "FF"):
            lines.append(f"  optimisations save {naive[column] - best[column]:,} {column} "
                         f"({naive[column]:,} -> {best[column]:,})")
        for variant in ("no-precompute", "no-fold", "no-early-exit"):
            other = report.get(f"unroll64-{variant}", {}).get("ecp5")
            if other:
                lines.append(f"  {variant}: +{other['LUT4'] - best['LUT4']:,} LUT4, "
                             f"+{other['carry'] - best['carry']:,} carry, "
                             f"+{other['FF'] - best['FF']:,} FF")
    budget = int(ICE40_LUTS * (1 - ICE40_SPARE))
    fits = [entry for entry in report.values() if "ice40" in entry
            and max(entry["ice40"]["LUT4"], entry["ice40"]["FF"]) <= budget]
    if fits:
        best_fit = max(fits, key=lambda e: e["nonces_per_clock"])
        # Yosys counts LUTs and FFs; nextpnr packs them into logic cells (one LUT4 + one FF each),
        # and a FF fed by another FF takes a cell of its own, so cells can exceed both counts.
        lines.append(f"iCE40UP5K: unroll {best_fit['unroll']} ({best_fit['variant']}) needs "
                     f"{best_fit['ice40']['LUT4']:,} LUT4 and {best_fit['ice40']['FF']:,} FF, "
                     f"each within {budget:,} (10% spare of {ICE40_LUTS:,}); logic cells after "
                     f"packing come from place-and-route (`nangua build icebreaker`)")
    return lines
