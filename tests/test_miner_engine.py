"""The miner engine in the Amaranth simulator against the golden model: random jobs on every
configuration of ``CONFIGS``, and its contract (back-pressure, wrap, aborts) on unroll 64, 8, 1."""

import random

import pytest

from nangua.hdl.miner.engine import MinerEngine
from nangua.hdl.miner.layouts import ResultKind
from nangua.hdl.miner.model import MASK, Job
from nangua.sim.engine_tb import EngineRun, put_job, run_engine, wait_done

from miner_jobs import CONFIGS, assert_results_match, config_id, engine, random_job

@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_random_jobs_report_exactly_the_model_nonces(config):
    rng = random.Random(config_id(config))
    dut = engine(**config)
    jobs = [random_job(rng, job_id, count) for job_id, count in [(1, 40), (2, 33), (3, 1)]]
    run = run_engine(dut, jobs)
    assert_results_match(run, jobs, early_exit=dut.early_exit)
    assert sum(job.nonce_end - job.nonce_start + 1 for job in jobs) == run.hash_counts[-1][1]


# Behaviours, on the three reference configurations.

@pytest.mark.parametrize("unroll", [64, 8, 1])
def test_result_backpressure_loses_nothing(unroll):
    rng = random.Random(unroll)
    dut = engine(unroll, fifo_depth=2)
    # One hash in four hits: the 2-entry FIFO fills and the sink is ready one clock in five.
    jobs = [random_job(rng, 7, 48, hit_rate_log2=2)]
    run = run_engine(dut, jobs, ready_probability=0.2, seed=unroll)
    assert len(jobs[0].scan(True)) > 6
    assert_results_match(run, jobs)


@pytest.mark.parametrize("unroll", [64, 8, 1])
def test_nonce_range_wraps_at_0xffffffff(unroll):
    rng = random.Random(100 + unroll)
    jobs = [random_job(rng, 9, 40, hit_rate_log2=2, start=0xFFFF_FFEC)]
    run = run_engine(engine(unroll), jobs)
    assert any(n < 0x100 for n in jobs[0].scan(True))
    assert any(n > 0xFFFF_0000 for n in jobs[0].scan(True))
    assert_results_match(run, jobs)


@pytest.mark.parametrize("unroll", [64, 8, 1])
def test_job_switch_mid_scan_aborts_old_job_cleanly(unroll):
    rng = random.Random(200 + unroll)
    dut = engine(unroll, fifo_depth=4)
    old = random_job(rng, 1, 100_000, hit_rate_log2=2)
    new = random_job(rng, 2, 24, hit_rate_log2=2)
    old_hits = []
    for nonce in range(old.nonce_start, old.nonce_start + 400):
        if old.hit(nonce & MASK, early_exit=True):
            old_hits.append(nonce & MASK)

    async def script(ctx, run):
        await put_job(ctx, dut, old)
        # Switch while old results are still being found and some wait in the FIFO.
        while len(run.nonces(old.job_id)) < 5:
            await ctx.tick()
        await put_job(ctx, dut, new)
        await wait_done(ctx, run, new.job_id)

    run = EngineRun(dut, script, ready_probability=0.5, seed=unroll).run()
    old_results = [r for r in run.results if r.job_id == old.job_id]
    new_results = [(r.kind, r.nonce) for r in run.results if r.job_id == new.job_id]
    # The old job: a prefix of its hits in order, and no DONE.
    assert all(r.kind == ResultKind.NONCE for r in old_results)
    assert [r.nonce for r in old_results] == old_hits[:len(old_results)]
    assert len(old_results) >= 5
    # The new job: exactly its own hits, then DONE, after every old result.
    assert new_results == ([(ResultKind.NONCE, n) for n in new.scan(True)]
                           + [(ResultKind.DONE, new.nonce_end)])
    assert run.results[:len(old_results)] == old_results


def test_a_job_while_idle_after_done_starts_fresh():
    rng = random.Random(5)
    dut = engine(8)
    jobs = [random_job(rng, 4, 20), random_job(rng, 4, 20), random_job(rng, 200, 5)]
    assert_results_match(run_engine(dut, jobs), jobs)


def test_full_nonce_range_is_2_to_the_32():
    job = Job((0,) * 8, (0,) * 3, target=0, nonce_start=5, nonce_end=4)
    dut = engine(1)

    async def script(ctx, run):
        await put_job(ctx, dut, job)
        for _ in range(300):
            await ctx.tick()
        assert ctx.get(dut.busy)

    run = EngineRun(dut, script, settle=0).run()
    assert run.results == []


@pytest.mark.parametrize("kwargs,message", [
    (dict(unroll=3), "unroll must be one of 1, 2, 4, 8, 16, 32, 64, not 3"),
    (dict(unroll=64, cores=0), "cores must be an integer from 1 to 64, not 0"),
    (dict(unroll=64, fifo_depth=1), "fifo_depth must be an integer of at least 2, not 1"),
])
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        MinerEngine(**kwargs)
