"""cocotb benches run by :mod:`nangua.sim.runner` on the generated Verilog (see ``tests/test_cocotb_*``)."""
