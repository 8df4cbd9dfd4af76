"""Amaranth-simulator helpers for the miner engine: drive jobs in, collect results out.

Used by the tests, the demo and the benchmark, so that all of them exercise the engine the same way.
"""

import random
from dataclasses import dataclass

from amaranth.sim import Simulator

from ..hdl.miner.layouts import JobLayout, ResultKind

__all__ = ["Result", "job_payload", "put_job", "EngineRun", "run_engine"]


@dataclass(frozen=True)
class Result:
    kind: ResultKind
    job_id: int
    nonce: int
    cycle: int


def job_payload(job):
    """A :class:`~nangua.hdl.miner.model.Job` as the engine's ``JobLayout`` constant."""
    return JobLayout().const({
        "midstate": list(job.midstate),
        "tail": list(job.tail),
        "target": job.target,
        "nonce_start": job.nonce_start,
        "nonce_end": job.nonce_end,
        "job_id": job.job_id,
    })


async def put_job(ctx, engine, job):
    """Offer ``job`` until the engine takes it; returns after the accepting clock."""
    ctx.set(engine.job.payload, job_payload(job))
    ctx.set(engine.job.valid, 1)
    await ctx.tick().until(engine.job.ready)
    ctx.set(engine.job.valid, 0)


class EngineRun:
    """One simulation of an engine: a script of jobs, a result sink with optional back-pressure.

    Parameters
    ----------
    engine : MinerEngine
    script : async callable (ctx, run) -> None
        Drives the job stream (use :func:`put_job`); the simulation ends when it returns and
        :attr:`results` has settled (no result for ``settle`` clocks), or after ``max_cycles``.
    ready_probability : float
        Chance that the sink is ready on a given clock (1.0 = always).
    seed : int
        Seeds the sink's back-pressure pattern.
    """

    def __init__(self, engine, script, *, ready_probability=1.0, seed=0, settle=None,
                 max_cycles=1_000_000, vcd=None):
        self.engine = engine
        self.script = script
        self.ready_probability = ready_probability
        self.rng = random.Random(seed)
        self.settle = settle
        self.max_cycles = max_cycles
        self.vcd = vcd
        self.results = []
        #: (cycle, hashes) each time the engine's hash counter changed.
        self.hash_counts = []
        self.cycle = 0
        self.script_done = False

    def nonces(self, job_id=None):
        return [r.nonce for r in self.results
                if r.kind == ResultKind.NONCE and job_id in (None, r.job_id)]

    def done(self, job_id=None):
        return [r for r in self.results if r.kind == ResultKind.DONE and job_id in (None, r.job_id)]

    async def _sink(self, ctx):
        engine = self.engine
        async for clk_edge, rst, valid, ready, payload, hashes in ctx.tick().sample(
                engine.result.valid, engine.result.ready, engine.result.payload, engine.hashes):
            self.cycle += 1
            if not self.hash_counts or self.hash_counts[-1][1] != hashes:
                self.hash_counts.append((self.cycle, hashes))
            if valid and ready:
                self.results.append(Result(ResultKind(payload.kind), payload.job_id,
                                           payload.nonce, self.cycle))
            ctx.set(engine.result.ready, self.rng.random() < self.ready_probability)

    async def _driver(self, ctx):
        await self.script(ctx, self)
        self.script_done = True
        settle = self.settle if self.settle is not None else self.engine.latency + 64
        last = len(self.results)
        quiet = 0
        while quiet < settle and self.cycle < self.max_cycles:
            await ctx.tick()
            if len(self.results) != last or ctx.get(self.engine.busy):
                last, quiet = len(self.results), 0
            else:
                quiet += 1

    def run(self):
        sim = Simulator(self.engine)
        sim.add_clock(1e-8)
        sim.add_process(self._sink)
        sim.add_testbench(self._driver)
        if self.vcd:
            with sim.write_vcd(self.vcd):
                sim.run()
        else:
            sim.run()
        return self


async def wait_done(ctx, run, job_id, max_cycles=10_000_000, seen=0):
    """Clock until ``run`` has seen more than ``seen`` DONEs of ``job_id``."""
    start = run.cycle
    while len(run.done(job_id)) <= seen:
        if run.cycle - start > max_cycles:
            raise TimeoutError(f"job {job_id} did not finish in {max_cycles} clocks")
        await ctx.tick()


def run_engine(engine, jobs, **kwargs):
    """Scan ``jobs`` one after the other (each to its DONE); returns the :class:`EngineRun`."""
    async def script(ctx, run):
        for job in jobs:
            seen = len(run.done(job.job_id))
            await put_job(ctx, engine, job)
            await wait_done(ctx, run, job.job_id, seen=seen)
    return EngineRun(engine, script, **kwargs).run()
