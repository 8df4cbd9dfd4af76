"""cocotb bench of the whole miner top (UART pins in and out) on its Verilog, on both simulators."""

import pytest

from nangua.hdl.link.top import MinerLinkTop
from nangua.sim import runner

BENCH = "nangua.sim.benches.link_top"
#: Line rate of the benches; the clock is DIVISOR times faster: the UART's smallest divisor
#: makes the shortest runs.
BAUD = 115200
DIVISOR = 4

#: (protocol, unroll, simulator). Icarus runs a few thousand cycles per second on these designs,
#: enough for native frames on unroll 1 but not for the Icarus detect packet (100k hashes), which
#: runs on Verilator only: slow here (a build and 800k cycles), and in the default run through
#: the simulated board instead (tests/test_sim_board.py).
DEFAULT = [("native", 1, "icarus")]
SLOW = [("icarus", 8, "verilator"), ("native", 8, "verilator"), ("icarus", 64, "verilator")]


def skip_unless_installed(simulator):
    """Skip only when the simulator is genuinely absent here."""
    reason = runner.why_unavailable(simulator)
    if reason is not None:
        pytest.skip(reason)


def top(protocol, unroll):
    return MinerLinkTop(protocol=protocol, unroll=unroll, clk_freq=BAUD * DIVISOR, baud=BAUD)


def bench(protocol, unroll, simulator):
    skip_unless_installed(simulator)
    runner.run(top(protocol, unroll), BENCH, simulator=simulator,
               toplevel=f"miner_top_{protocol}_u{unroll}", seed=1,
               extra_env={"NANGUA_PROTOCOL": protocol, "NANGUA_DIVISOR": str(DIVISOR)})


@pytest.mark.parametrize("protocol,unroll", [
    pytest.param(p, u, marks=[] if any((p, u) == d[:2] for d in DEFAULT) else pytest.mark.slow)
    for p, u in sorted({(p, u) for p, u, _ in DEFAULT + SLOW})])
def test_verilog_convert(protocol, unroll):
    assert "module miner_top" in runner.convert(top(protocol, unroll), "miner_top")


@pytest.mark.parametrize("protocol,unroll,simulator", DEFAULT)
def test_top(protocol, unroll, simulator):
    bench(protocol, unroll, simulator)


@pytest.mark.slow
@pytest.mark.parametrize("protocol,unroll,simulator", SLOW)
def test_top_slow(protocol, unroll, simulator):
    bench(protocol, unroll, simulator)
