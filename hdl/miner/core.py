"""The SHA-256d mining core: two SHA-256 round pipelines in series, with the optimisations real
miners use, each switchable so its effect can be measured."""

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from ..sha256 import model as sha
from ..sha256.pipeline import folded_rounds, keeper, unrolled_rounds
from ..sha256.words import JobWord, add, as_value, round_step, small_sigma0, small_sigma1
from .model import BLOCK2_PADDING, DIGEST_PADDING

__all__ = ["CoreConfig", "Sha256dCore", "UNROLL_CHOICES"]

#: Physical round stages per compression: 64 is fully unrolled, smaller values fold the rounds.
UNROLL_CHOICES = (1, 2, 4, 8, 16, 32, 64)
#: Rounds of the first hash that depend only on the job (W0..W2 are fixed; W3 is the nonce).
PRECOMPUTED_ROUNDS = 3
#: With the early exit, the second hash stops after this many rounds: H7 = IV7 + e.
EARLY_EXIT_ROUNDS = 61


def bswap32(value):
    return Cat(value[24:32], value[16:24], value[8:16], value[0:8])


@dataclass(frozen=True)
class CoreConfig:
    """The parameters of a :class:`Sha256dCore` and the figures that follow from them."""

    unroll: int = 64
    cores: int = 1
    precompute: bool = True
    fold_constants: bool = True
    early_exit: bool = True

    def __post_init__(self):
        if self.unroll not in UNROLL_CHOICES:
            raise ValueError(f"unroll must be one of {', '.join(map(str, UNROLL_CHOICES))}, "
                             f"not {self.unroll!r}")
        if not isinstance(self.cores, int) or not 1 <= self.cores <= 64:
            raise ValueError(f"cores must be an integer from 1 to 64, not {self.cores!r}")

    @property
    def rounds_per_stage(self):
        return 64 // self.unroll

    @property
    def nonces_per_clock(self):
        return self.cores * self.unroll / 64

    @property
    def unrolled(self):
        return self.unroll == 64

    @property
    def first_round(self):
        """First round of the first hash in the pipeline (3 when precomputed)."""
        # Folded, a stage's round logic serves all its rounds: precomputing three of them would
        # save no logic and cost a round of its own, so only the unrolled pipeline does it.
        return PRECOMPUTED_ROUNDS if self.precompute and self.unrolled else 0

    @property
    def second_hash_rounds(self):
        """Rounds of the second hash in the pipeline (61 with the early exit, unrolled)."""
        # Folded, the early exit keeps all 64 rounds (h after round 64 is e after round 61) and
        # saves the final additions and the comparison of the lower 224 bits.
        return EARLY_EXIT_ROUNDS if self.early_exit and self.unrolled else 64

    @property
    def latency(self):
        """Enabled clocks from a nonce's sampling to its slot's ``out_valid``."""
        if self.unrolled:
            return 64 - self.first_round + self.second_hash_rounds
        # Folded: 64 rounds per hash, and each hash's output register adds one hand-off.
        return 2 * 64 + self.rounds_per_stage


class Sha256dCore(wiring.Component):
    """``cores`` pipelines computing SHA-256d of a job's header for consecutive nonces.

    Parameters
    ----------
    unroll : int
        Physical round stages per compression, one of :data:`UNROLL_CHOICES`. Each stage runs
        ``64 // unroll`` rounds on successive clocks, so each pipeline takes a nonce every
        ``64 // unroll`` enabled clocks: throughput is exactly ``cores * unroll / 64`` nonces per
        enabled clock.
    cores : int
        Pipelines side by side; pipeline ``c`` hashes ``nonce + c``.
    precompute : bool
        Compute the first hash's rounds 0..2 (which depend only on the job) once per job, with
        one iterative round, instead of in pipeline stages for every nonce. Only when fully
        unrolled: a folded stage's round logic serves all its rounds, so there it saves nothing.
    fold_constants : bool
        Fold the constant message words (block-2 padding; the second hash's IV and words 8..15)
        into the logic. Off, they are carried in pipeline registers like data.
    early_exit : bool
        Compare only H7, the hash value's top 32 bits, with the target's top word. Fully
        unrolled, the second hash then stops after round 61 (H7 = IV7 + e); folded, the rounds
        stay and the other seven final additions and the 224-bit comparison go. A nonce whose top
        word equals the target's is reported even if the lower bits miss (probability 2**-32 per
        hash; host software re-checks); off, all 256 bits are compared.

    Members
    -------
    midstate, tail, target : In
        The job, held stable by the owner from ``start`` until the job ends.
    start : In(1)
        Pulse after the job inputs change: starts the per-job precomputation.
    job_ready : Out(1)
        The per-job values are valid; nonces may enter. Falls the clock after ``start`` for
        :data:`PRECOMPUTED_ROUNDS` + 1 clocks when ``precompute`` is on.
    en : In(1)
        Clock enable of the whole pipeline: low freezes it (back-pressure).
    nonce, nonce_valid : In
        Next slot's base nonce; sampled on clocks where ``take & en``.
    take : Out(1)
        Combinational: the pipeline samples ``nonce`` at the end of this clock if ``en``.
    flush : In(1)
        Invalidate every slot in flight (a job switch).
    out_valid, out_hits : Out
        A slot leaves the pipeline: bit ``c`` of ``out_hits`` says whether ``nonce + c`` of that
        slot meets the target. Consumed on a clock with ``en``. Slots leave in the order they
        entered, :attr:`latency` enabled clocks after their nonce was sampled.
    """

    def __init__(self, *, unroll=64, cores=1, precompute=True, fold_constants=True,
                 early_exit=True):
        with checking(self):
            self._config = config = CoreConfig(unroll, cores, precompute, fold_constants,
                                               early_exit)
        super().__init__({
            "midstate":    In(data.ArrayLayout(unsigned(32), 8)),
            "tail":        In(data.ArrayLayout(unsigned(32), 3)),
            "target":      In(256),
            "start":       In(1),
            "job_ready":   Out(1),
            "en":          In(1),
            "nonce":       In(32),
            "nonce_valid": In(1),
            "take":        Out(1),
            "flush":       In(1),
            "out_valid":   Out(1),
            "out_hits":    Out(config.cores),
        })

    config = property(lambda self: self._config)
    unroll = property(lambda self: self._config.unroll)
    cores = property(lambda self: self._config.cores)
    precompute = property(lambda self: self._config.precompute)
    fold_constants = property(lambda self: self._config.fold_constants)
    early_exit = property(lambda self: self._config.early_exit)
    rounds_per_stage = property(lambda self: self._config.rounds_per_stage)
    first_round = property(lambda self: self._config.first_round)
    second_hash_rounds = property(lambda self: self._config.second_hash_rounds)
    nonces_per_clock = property(lambda self: self._config.nonces_per_clock)
    #: Enabled clocks from a nonce's sampling to its slot's ``out_valid``.
    latency = property(lambda self: self._config.latency)

    def _constant(self, value):
        """A constant word: folded, or a register-borne value when folding is off."""
        return value if self.fold_constants else Const(value, 32)

    def _precompute_unit(self, m):
        """Rounds 0..2 of the first hash, one per clock, once per job."""
        state = [Signal(32, name=f"pre_{slot}") for slot in "abcdefgh"]
        count = Signal(range(PRECOMPUTED_ROUNDS + 2))
        m.d.comb += self.job_ready.eq(count == PRECOMPUTED_ROUNDS + 1)
        k = Array(Const(sha.K[t], 32) for t in range(PRECOMPUTED_ROUNDS))
        w = Array(self.tail[t] for t in range(PRECOMPUTED_ROUNDS))
        t = count - 1
        next_state = round_step(tuple(state), k[t], w[t], keeper(m, "pre"))
        with m.If(self.start):
            m.d.sync += [s.eq(self.midstate[i]) for i, s in enumerate(state)]
            m.d.sync += count.eq(1)
        with m.Elif(~self.job_ready & (count != 0)):
            m.d.sync += [s.eq(as_value(x)) for s, x in zip(state, next_state)]
            m.d.sync += count.eq(count + 1)
        return tuple(JobWord(s) for s in state)

    def elaborate(self, platform):
        m = Module()
        r = self.rounds_per_stage
        folded = r > 1

        if folded:
            phase = Signal(range(r))
            with m.If(self.en):
                m.d.sync += phase.eq(phase + 1)
                with m.If(phase == r - 1):
                    m.d.sync += phase.eq(0)
            handoff = phase == r - 1
            fresh = phase == 0
        else:
            phase, handoff, fresh = 0, Const(1), Const(1)
        m.d.comb += self.take.eq(handoff)

        tail = [JobWord(self.tail[i]) for i in range(3)]
        midstate = [JobWord(self.midstate[i]) for i in range(8)]
        if self.first_round:
            state1 = self._precompute_unit(m)
        else:
            # Naive: the job's midstate and W0..W2 ride the pipeline with every nonce.
            m.d.comb += self.job_ready.eq(1)
            state1 = tuple(w.value for w in midstate)
            tail = [w.value for w in tail]

        padding1 = [self._constant(w) for w in BLOCK2_PADDING]
        padding2 = [self._constant(w) for w in DIGEST_PADDING]
        iv = [self._constant(w) for w in sha.IV]
        first = self.first_round
        last2 = self.second_hash_rounds

        hits = []
        for c in range(self.cores):
            keep = keeper(m, f"c{c}")
            nonce = (self.nonce + c)[:32] if c else self.nonce
            words1 = {0: tail[0], 1: tail[1], 2: tail[2], 3: nonce}
            words1.update({4 + i: w for i, w in enumerate(padding1)})
            if self.first_round:
                # W16 and W17 depend only on W0..W2 and constants: fixed for the job.
                words1[16] = add(small_sigma1(words1[14]), words1[9], small_sigma0(tail[1]),
                                 tail[0], keep=keep)
                words1[17] = add(small_sigma1(words1[15]), words1[10], small_sigma0(tail[2]),
                                 tail[1], keep=keep)
            carry = {"valid": self.nonce_valid} if c == 0 else {}
            common = dict(enable=self.en, clear=self.flush)
            if folded:
                common.update(rounds_per_stage=r, phase=phase, handoff=handoff)
            build = folded_rounds if folded else unrolled_rounds
            out1, carry = build(m, name=f"c{c}_h1", first=first, last=64, state=state1,
                                words=words1, carry=carry, **common)
            # Kept: each digest word feeds a round's sum alone (see words.add).
            digest1 = [keep("digest", add(h, x)) for h, x in zip(midstate, out1)]
            words2 = {i: w for i, w in enumerate(digest1)}
            words2.update({8 + i: w for i, w in enumerate(padding2)})
            out2, carry = build(m, name=f"c{c}_h2", first=0, last=last2, state=tuple(iv),
                                words=words2, carry=carry, **common)
            if c == 0:
                valid = carry["valid"]

            if self.early_exit:
                # H7 = IV7 + h after round 64 = IV7 + e after round 61.
                h7 = as_value(keep("h7", add(iv[7], out2[4] if last2 == EARLY_EXIT_ROUNDS
                                             else out2[7])))
                hit = bswap32(h7) <= self.target[224:256]
            else:
                digest2 = [as_value(keep("h", add(h, x))) for h, x in zip(iv, out2)]
                hit = Cat(*(bswap32(h) for h in digest2)) <= self.target
            hits.append(hit)

        m.d.comb += [
            self.out_valid.eq(valid & fresh),
            self.out_hits.eq(Cat(*hits)),
        ]
        return m
