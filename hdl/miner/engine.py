"""The job/nonce engine: scans a job's nonce range on the SHA-256d core and reports results."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..params import checking
from .core import CoreConfig, Sha256dCore
from .layouts import JOB_ID_BITS, JobLayout, ResultKind, ResultLayout

__all__ = ["MinerEngine"]


class MinerEngine(wiring.Component):
    """Scans nonce ranges for hashes that meet a target; every result leaves through a FIFO.

    A job (midstate, tail, target, inclusive nonce range [``nonce_start``, ``nonce_end``] that
    wraps through 0xffffffff, job id) is scanned upward. Every nonce whose SHA-256d meets the
    target is reported as a ``NONCE`` result, in scan order; after the range's last nonce has been
    checked, a ``DONE`` result (its ``nonce`` = ``nonce_end``) closes the job. A job of
    ``nonce_end = nonce_start - 1`` scans all 2**32 nonces.

    Contract:

    * **Throughput**: ``cores * unroll / 64`` nonces per clock while the result FIFO has room.
    * **Latency**: a job's first nonce enters the core on the first hand-off at least 3 clocks
      after the clock that accepts the job (6 with ``precompute``); its result is known
      :attr:`Sha256dCore.latency` clocks later and enters the FIFO on the next clock.
    * **Abort**: a job may be offered at any time. Accepting it aborts the current job at once: its
      unchecked nonces are dropped and it gets no ``DONE``. Every result already found has been
      pushed into the FIFO (``job.ready`` is low while one still waits for room), so no result of
      the old job is ever reported under the new id, and none is lost.
    * **Back-pressure**: when a found nonce cannot enter the full FIFO, the whole core stalls;
      nothing is dropped. Results wait in the FIFO until ``result`` is read.

    Parameters
    ----------
    unroll, cores, precompute, fold_constants, early_exit :
        Passed to :class:`Sha256dCore`; see there.
    fifo_depth : int
        Result FIFO entries.

    Members
    -------
    job : In(stream.Signature(JobLayout))
        Jobs to scan.
    result : Out(stream.Signature(ResultLayout))
        Found nonces and range-done markers, tagged with their job id.
    busy : Out(1)
        A job is being scanned (until its ``DONE`` enters the FIFO).
    hashes : Out(64)
        Nonces whose hash has been checked since reset.
    job_id : Out(JOB_ID_BITS)
        Id of the current (or last) job.
    """

    job: In(stream.Signature(JobLayout()))
    result: Out(stream.Signature(ResultLayout()))
    busy: Out(1)
    hashes: Out(64)
    job_id: Out(JOB_ID_BITS)

    def __init__(self, *, unroll=64, cores=1, precompute=True, fold_constants=True,
                 early_exit=True, fifo_depth=16):
        with checking(self):
            if not isinstance(fifo_depth, int) or fifo_depth < 2:
                raise ValueError(f"fifo_depth must be an integer of at least 2, "
                                 f"not {fifo_depth!r}")
            self._config = CoreConfig(unroll, cores, precompute, fold_constants, early_exit)
        self._fifo_depth = fifo_depth
        super().__init__()

    #: The core's parameters (:class:`CoreConfig`): unroll, cores, switches, latency, throughput.
    config = property(lambda self: self._config)
    fifo_depth = property(lambda self: self._fifo_depth)

    unroll = property(lambda self: self._config.unroll)
    cores = property(lambda self: self._config.cores)
    early_exit = property(lambda self: self._config.early_exit)
    nonces_per_clock = property(lambda self: self._config.nonces_per_clock)
    #: Enabled clocks from a nonce entering the core to its result being known.
    latency = property(lambda self: self._config.latency)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = Sha256dCore(**vars(self._config))
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=ResultLayout().size,
                                                    depth=self._fifo_depth)
        m.d.comb += [
            self.result.payload.eq(fifo.r_data),
            self.result.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.result.ready),
        ]
        cores = core.cores

        # The current job, held for the core.
        target = Signal(256)
        nonce_end = Signal(32)
        m.d.comb += [core.target.eq(target)]

        # Input side: the next slot's base nonce and how many nonces are left to start.
        next_nonce = Signal(32)
        to_start = Signal(33)
        # Output side: the base nonce of the next slot to leave the core, and nonces left to check.
        out_nonce = Signal(32)
        to_check = Signal(33)

        # The slot that left the core last: its hits not yet in the FIFO, and whether the job's
        # DONE must follow them.
        pending = Signal(cores)
        pending_base = Signal(32)
        pending_done = Signal()

        # Push the lowest pending hit, then DONE once no hit is left.
        lowest = Signal(range(cores))
        for c in reversed(range(cores)):
            with m.If(pending[c]):
                m.d.comb += lowest.eq(c)
        push = Signal(ResultLayout())
        m.d.comb += [
            push.job_id.eq(self.job_id),
            fifo.w_data.eq(push.as_value()),
            fifo.w_en.eq(pending.any() | pending_done),
        ]
        with m.If(pending.any()):
            m.d.comb += [push.kind.eq(ResultKind.NONCE),
                         push.nonce.eq(pending_base + lowest)]
        with m.Else():
            m.d.comb += [push.kind.eq(ResultKind.DONE), push.nonce.eq(nonce_end)]

        pushed = fifo.w_en & fifo.w_rdy
        pending_after = Signal(cores)
        done_after = Signal()
        with m.If(pushed & pending.any()):
            m.d.comb += [pending_after.eq(pending & ~(Const(1, cores) << lowest)),
                         done_after.eq(pending_done)]
        with m.Elif(pushed):
            m.d.comb += [pending_after.eq(0), done_after.eq(0)]
        with m.Else():
            m.d.comb += [pending_after.eq(pending), done_after.eq(pending_done)]
        m.d.sync += [pending.eq(pending_after), pending_done.eq(done_after)]
        with m.If(pushed & ~pending.any()):
            m.d.sync += self.busy.eq(0)

        # The core advances exactly when the output slot is free by the end of this clock.
        advance = Signal()
        m.d.comb += [advance.eq(~pending_after.any() & ~done_after), core.en.eq(advance)]

        # A slot leaving the core: keep the hits of nonces inside the range, count the work.
        in_range = Signal(cores)
        m.d.comb += in_range.eq(Cat((to_check > c) for c in range(cores)))
        checked = Mux(to_check < cores, to_check, cores)
        leaving = advance & core.out_valid
        with m.If(leaving):
            m.d.sync += [
                pending.eq(core.out_hits & in_range),
                pending_base.eq(out_nonce),
                pending_done.eq(to_check <= cores),
                out_nonce.eq(out_nonce + cores),
                to_check.eq(to_check - checked),
                self.hashes.eq(self.hashes + checked),
            ]

        # Feed the core one slot (``cores`` consecutive nonces) per hand-off.
        scanning = Signal()
        m.d.comb += [core.nonce.eq(next_nonce), core.nonce_valid.eq(scanning & to_start.any())]
        with m.If(advance & core.take & core.nonce_valid):
            m.d.sync += [
                next_nonce.eq(next_nonce + cores),
                to_start.eq(Mux(to_start < cores, 0, to_start - cores)),
            ]

        # A new job is taken only once the output slot is free: every found nonce is in the FIFO.
        m.d.comb += self.job.ready.eq(advance)
        start_core = Signal()
        preparing = Signal()
        m.d.comb += core.start.eq(start_core)
        m.d.sync += start_core.eq(0)
        with m.If(preparing & ~start_core & core.job_ready):
            m.d.sync += [preparing.eq(0), scanning.eq(1)]

        payload = self.job.payload
        count = Signal(33)
        m.d.comb += count.eq((payload.nonce_end - payload.nonce_start)[:32] + 1)
        with m.If(self.job.valid & self.job.ready):
            m.d.comb += core.flush.eq(1)
            m.d.sync += [
                core.midstate.eq(payload.midstate),
                core.tail.eq(payload.tail),
                target.eq(payload.target),
                nonce_end.eq(payload.nonce_end),
                self.job_id.eq(payload.job_id),
                next_nonce.eq(payload.nonce_start),
                out_nonce.eq(payload.nonce_start),
                to_start.eq(count),
                to_check.eq(count),
                # The slot leaving this clock belongs to the aborted job.
                pending.eq(0),
                pending_done.eq(0),
                start_core.eq(1),
                preparing.eq(1),
                scanning.eq(0),
                self.busy.eq(1),
            ]
        return m

