"""SHA-256 round and compression components for general use (the miner builds its own, folded
with what it knows about its messages, from the same builders)."""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from . import words as w
from .pipeline import folded_rounds, keeper, unrolled_rounds

__all__ = ["StateLayout", "BlockLayout", "CompressInputLayout", "Sha256Round", "Sha256Compress",
           "UNROLL_CHOICES"]

UNROLL_CHOICES = (1, 2, 4, 8, 16, 32, 64)

#: Eight 32-bit words: a SHA-256 chaining value or working state (element 0 = H0 / a).
StateLayout = data.ArrayLayout(unsigned(32), 8)
#: Sixteen 32-bit message words (element 0 = W0, the first four bytes, big-endian).
BlockLayout = data.ArrayLayout(unsigned(32), 16)


class CompressInputLayout(data.StructLayout):
    def __init__(self):
        super().__init__({"chaining": StateLayout, "block": BlockLayout})


class Sha256Round(wiring.Component):
    """One SHA-256 round, combinational.

    Members
    -------
    state : In(StateLayout)
        Working variables a..h before the round.
    k, w : In(32)
        Round constant and message-schedule word.
    next : Out(StateLayout)
        Working variables after the round.
    """

    state: In(StateLayout)
    k: In(32)
    w: In(32)
    next: Out(StateLayout)

    def elaborate(self, platform):
        m = Module()
        state = tuple(self.state[i] for i in range(8))
        result = w.round_step(state, self.k, self.w, keeper(m, "round"))
        m.d.comb += [self.next[i].eq(word) for i, word in enumerate(result)]
        return m


class Sha256Compress(wiring.Component):
    """The SHA-256 compression function as a pipeline: ``chaining + rounds(chaining, block)``.

    Parameters
    ----------
    unroll : int
        Physical round stages, one of :data:`UNROLL_CHOICES`: each stage runs ``64 // unroll``
        rounds on successive clocks. Throughput is one block every ``64 // unroll`` clocks.

    Members
    -------
    i : In(stream.Signature(CompressInputLayout))
        Chaining value and message block. Taken only on hand-off clocks (every ``64 // unroll``).
    o : Out(stream.Signature(StateLayout))
        The new chaining value, in input order, :attr:`latency` clocks after its input was taken
        (more while ``o`` is stalled: back-pressure freezes the whole pipeline).
    """

    def __init__(self, *, unroll=64):
        with checking(self):
            if unroll not in UNROLL_CHOICES:
                raise ValueError(f"unroll must be one of {', '.join(map(str, UNROLL_CHOICES))}, "
                                 f"not {unroll!r}")
        self._unroll = unroll
        super().__init__({
            "i": In(stream.Signature(CompressInputLayout())),
            "o": Out(stream.Signature(StateLayout)),
        })

    @property
    def unroll(self):
        return self._unroll

    @property
    def latency(self):
        """Clocks from an input being taken to its output being valid, without back-pressure."""
        r = 64 // self._unroll
        # Stages, the folded pipeline's output hand-off, and the output register.
        return 64 + 1 if r == 1 else 64 + r + 1

    def elaborate(self, platform):
        m = Module()
        r = 64 // self._unroll
        # The pipeline advances unless a finished block waits for the consumer.
        enable = Signal()
        m.d.comb += enable.eq(~self.o.valid | self.o.ready)
        common = dict(enable=enable)
        if r > 1:
            phase = Signal(range(r))
            with m.If(enable):
                m.d.sync += phase.eq(Mux(phase == r - 1, 0, phase + 1))
            handoff = phase == r - 1
            fresh = phase == 0
            common.update(rounds_per_stage=r, phase=phase, handoff=handoff)
            build = folded_rounds
        else:
            handoff, fresh = Const(1), Const(1)
            build = unrolled_rounds
        m.d.comb += self.i.ready.eq(enable & handoff)

        chaining = [self.i.payload.chaining[j] for j in range(8)]
        block = {t: self.i.payload.block[t] for t in range(16)}
        # Chaining values ride along for the final addition; the valid bit marks real blocks.
        carry = {"valid": self.i.valid, **{f"h{j}": chaining[j] for j in range(8)}}
        state, carry = build(m, name="c", first=0, last=64, state=tuple(chaining), words=block,
                             carry=carry, **common)

        # The output register: loaded when a block leaves the pipeline, held while stalled.
        with m.If(enable):
            m.d.sync += self.o.valid.eq(carry["valid"] & fresh)
            m.d.sync += [self.o.payload[j].eq(w.as_value(w.add(carry[f"h{j}"], state[j])))
                         for j in range(8)]
        return m

