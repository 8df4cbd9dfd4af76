"""cocotb bench of the miner engine on its generated Verilog, on Icarus and on Verilator."""

import pytest

from nangua.hdl.miner.engine import MinerEngine
from nangua.sim import runner

BENCH = "nangua.sim.benches.miner"

#: (unroll, early_exit, window) per configuration. The default run keeps to one build per
#: simulator, the same configuration on both: unroll 1, because Icarus runs it at about 470
#: cycles/s here while event-driven simulation of unroll 8's eight chained rounds crawls at about
#: 22, and because it is the quickest Verilator build. The rest is `-m slow`.
CONFIGS = {
    "unroll8": dict(unroll=8, early_exit=True, window=8),
    "unroll8-full-compare": dict(unroll=8, early_exit=False, window=8),
    "unroll1": dict(unroll=1, early_exit=True, window=4),
    "unroll64": dict(unroll=64, early_exit=True, window=32),
}
DEFAULT = [("unroll1", "icarus"), ("unroll1", "verilator")]
#: Everything else, except unroll 64 on Icarus: about 2 cycles/s there, hours for this bench.
SLOW = [(config, simulator) for config in CONFIGS for simulator in runner.SIMULATORS
        if (config, simulator) not in DEFAULT and (config, simulator) != ("unroll64", "icarus")]


def skip_unless_installed(simulator):
    """Skip only when the simulator is genuinely absent here."""
    reason = runner.why_unavailable(simulator)
    if reason is not None:
        pytest.skip(reason)


def engine(config):
    params = CONFIGS[config]
    return MinerEngine(unroll=params["unroll"], early_exit=params["early_exit"])


def bench(config, simulator, seed=1):
    skip_unless_installed(simulator)
    params = CONFIGS[config]
    runner.run(engine(config), BENCH, simulator=simulator, toplevel=f"miner_engine_{config.replace('-', '_')}",
               seed=seed, extra_env={"NANGUA_EARLY_EXIT": str(int(params["early_exit"])),
                                     "NANGUA_WINDOW": str(params["window"])})


@pytest.mark.parametrize("config", [
    pytest.param(config, marks=[] if any(config == c for c, _ in DEFAULT) else pytest.mark.slow)
    for config in sorted(CONFIGS)])
def test_verilog_convert(config):
    text = runner.convert(engine(config), "miner_engine")
    assert "module miner_engine" in text


@pytest.mark.parametrize("config,simulator", DEFAULT)
def test_engine(config, simulator):
    bench(config, simulator)


@pytest.mark.slow
@pytest.mark.parametrize("config,simulator", SLOW)
def test_engine_slow(config, simulator):
    bench(config, simulator)
