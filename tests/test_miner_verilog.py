"""Every simulated miner configuration converts to Verilog (Yosys reports combinational loops and
driver conflicts that the Python simulator would only hang on)."""

import pytest
from amaranth.back import verilog

from miner_jobs import CONFIGS, config_id, engine


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_converts_to_verilog(config):
    text = verilog.convert(engine(**config), name="nangua_miner", emit_src=False)
    assert "module nangua_miner" in text
