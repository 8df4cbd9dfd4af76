"""The cocotb runner on a small real component, on both simulators."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nangua.sim import runner


class StreamRegister(wiring.Component):
    """One registered stage between two streams (the smallest design with a pipeline).

    ``i.ready`` is combinational from ``o.ready`` and the stage's fullness.
    """

    def __init__(self, width):
        self.width = width
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


class BrokenRegister(StreamRegister):
    """Drops its payload when stalled: the bench must catch it."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.o.valid & ~self.o.ready):
            m.d.sync += self.o.payload.eq(self.o.payload + 1)
        return m


def skip_unless_installed(simulator):
    """Skip only when the simulator is genuinely absent here."""
    reason = runner.why_unavailable(simulator)
    if reason is not None:
        pytest.skip(reason)


def test_verilog_convert():
    assert "module stream_register" in runner.convert(StreamRegister(16), "stream_register")


def test_icarus_fix_rewrites_always_star():
    text = runner.convert(StreamRegister(8), "stream_register")
    assert "always @*" in text
    fixed = runner.icarus_fixed(text)
    assert "always @*" not in fixed and "always_comb" in fixed


def test_build_dir_per_parameter_set():
    a = runner.convert(StreamRegister(8), "stream_register")
    b = runner.convert(StreamRegister(9), "stream_register")
    assert runner.build_dir("stream_register", "icarus", a) == \
        runner.build_dir("stream_register", "icarus", a)
    assert runner.build_dir("stream_register", "icarus", a) != \
        runner.build_dir("stream_register", "icarus", b)
    assert runner.build_dir("stream_register", "icarus", a) != \
        runner.build_dir("stream_register", "verilator", a)
    assert runner.build_dir("stream_register", "icarus", a).parent == runner.BUILD_ROOT


def test_unknown_simulator():
    with pytest.raises(ValueError, match=r"^simulator must be one of icarus, verilator, "
                                         r"not 'ghdl'$"):
        runner.run(None, "nangua.sim.benches.passthrough", simulator="ghdl")


def test_toplevel_must_be_a_plain_identifier():
    with pytest.raises(ValueError, match=r"^toplevel must be a plain Verilog identifier, "
                                         r"not 'stream-register'$"):
        runner.run(None, "nangua.sim.benches.passthrough", simulator="icarus",
                   toplevel="stream-register")


@pytest.mark.parametrize("simulator", runner.SIMULATORS)
def test_stream_register(simulator):
    skip_unless_installed(simulator)
    directory = runner.run(StreamRegister(16), "nangua.sim.benches.passthrough",
                           simulator=simulator, toplevel="stream_register", seed=1)
    assert (directory / "results.xml").exists()


@pytest.mark.parametrize("simulator", runner.SIMULATORS)
def test_bench_catches_a_broken_register(simulator):
    skip_unless_installed(simulator)
    with pytest.raises(runner.SimulationFailed, match="withdrawn or changed while stalled"):
        runner.run(BrokenRegister(16), "nangua.sim.benches.passthrough", simulator=simulator,
                   toplevel="broken_register", seed=1, testcase="test_gaps_and_backpressure")


@pytest.mark.parametrize("simulator,waves", [("icarus", "stream_register.fst"),
                                             ("verilator", "dump.vcd")])
def test_waves_only_when_asked(simulator, waves, monkeypatch):
    skip_unless_installed(simulator)
    monkeypatch.delenv("WAVES", raising=False)
    quiet = runner.run(StreamRegister(16), "nangua.sim.benches.passthrough", simulator=simulator,
                       toplevel="stream_register", seed=2, testcase="test_full_rate")
    assert not list(quiet.glob("*.fst")) + list(quiet.glob("*.vcd"))
    monkeypatch.setenv("WAVES", "1")
    loud = runner.run(StreamRegister(16), "nangua.sim.benches.passthrough", simulator=simulator,
                      toplevel="stream_register", seed=2, testcase="test_full_rate")
    assert loud != quiet and (loud / waves).stat().st_size > 0
