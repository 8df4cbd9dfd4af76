"""KPU benchmark: exact cycle counts and the utilisation goals of issue 3 (ECP5 configuration,
144 MAC units; iCE40 configuration, 9, for its 3×3 layer). The layers' outputs are checked
against the golden model inside ``measure``."""

import pytest

from nangua.bench.kpu import GOALS, measure

# Measured with ``./run nangua bench kpu``; the engine is deterministic, so any change to these
# numbers is a change of the schedule and must be looked at. (The iCE40 1×1 layer is limited by
# the serial post stage, one output per 16 cycles, and does not meet its goal: docs/kpu.md.)
EXPECTED_CYCLES = {
    ("ecp5", "conv3x3_c16_o16_16x16"): 4465,
    ("ecp5", "conv1x1_c16_o16_16x16"): 631,
    ("ice40", "conv3x3_c16_o16_16x16"): 73663,
}


@pytest.mark.parametrize("config,layer", sorted(EXPECTED_CYCLES))
def test_cycles_and_utilisation(config, layer):
    result = measure(config, layer)
    assert result["cycles"] == EXPECTED_CYCLES[config, layer]
    assert result["utilisation"] >= GOALS[layer]


def test_unknown_layer_is_refused():
    from nangua.bench import parse_list
    from nangua.bench.kpu import LAYERS
    with pytest.raises(ValueError, match=r"^unknown layer 'conv5x5'; choose from "):
        parse_list("conv5x5", LAYERS, "layer")


@pytest.mark.parametrize("simulation", [
    True, pytest.param(False, marks=pytest.mark.slow)], ids=["behavioural", "primitives"])
@pytest.mark.parametrize("config", ["ecp5", "ice40"])
def test_benchmark_configurations_convert_to_verilog(config, simulation):
    from amaranth.back import verilog
    from nangua.bench.kpu import make_kpu
    verilog.convert(make_kpu(config, simulation=simulation), name="kpu", emit_src=False)
