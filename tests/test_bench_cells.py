"""The logic-cell attribution of an iCE40 netlist: nextpnr's packing rules on a small netlist
written by hand (bits 2.. are nets; ports of each cell with their directions)."""

from nangua.bench.cells import cell_count, logic_cells


def _cell(kind, **ports):
    directions = {"O": "output", "Q": "output", "CO": "output"}
    return {"type": kind,
            "connections": {port: [bit] for port, bit in ports.items()},
            "port_directions": {port: directions.get(port, "input") for port in ports}}


def test_packing_rules():
    cells = {
        # a LUT used only by its flip-flop: one cell for both
        "$lut1": _cell("SB_LUT4", I0=2, I1=3, I2=4, I3=5, O=10),
        "a_SB_DFF_Q": _cell("SB_DFF", C=1, D=10, Q=11),
        # a flip-flop loaded from another flip-flop: a cell of its own
        "b_SB_DFF_Q": _cell("SB_DFF", C=1, D=11, Q=12),
        # a LUT with two users: its flip-flop takes a cell of its own
        "$lut2": _cell("SB_LUT4", I0=2, I1=6, I2=7, I3=5, O=13),
        "c_SB_DFF_Q": _cell("SB_DFF", C=1, D=13, Q=14),
        "$lut3": _cell("SB_LUT4", I0=13, I1=12, I2=14, I3=5, O=15),
        # a carry beside the LUT on its inputs, and one without
        "d_SB_CARRY": _cell("SB_CARRY", I0=6, I1=7, CI=5, CO=16),
        "e_SB_CARRY": _cell("SB_CARRY", I0=2, I1=11, CI=16, CO=17),
    }
    netlist = {"modules": {"top": {"cells": cells, "netnames": {
        "lut2_out": {"bits": [13]}, "lut3_out": {"bits": [15]}}}}}
    signals = logic_cells(netlist)
    assert signals["a"] == {"ff+lut": 1}
    assert signals["b"] == {"ff only": 1}
    assert signals["c"] == {"ff only": 1}
    assert signals["lut2_out"] == {"lut": 1}
    assert signals["lut3_out"] == {"lut": 1}
    assert signals["d"] == {"carry+lut": 1}
    assert signals["e"] == {"carry only": 1}
    # 3 LUTs, 2 flip-flops of their own, 1 lone carry
    assert sum(cell_count(kinds) for kinds in signals.values()) == 6
