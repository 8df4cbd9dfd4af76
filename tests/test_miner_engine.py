"""The miner engine in the Amaranth simulator, checked against the golden model.

Every configuration named in ``CONFIGS`` is simulated; the expensive real-header scans run for
unroll 64, 8 and 1 with every optimisation on.
"""

import random

import pytest
from amaranth.back import verilog

from nangua.hdl.miner.engine import MinerEngine
from nangua.hdl.miner.layouts import ResultKind
from nangua.hdl.miner.model import MASK, Job, header_nonce
from nangua.sim.engine_tb import EngineRun, put_job, run_engine, wait_done

from vectors import bitcoin_headers

#: The genesis block and a dozen more real headers, spread over the vectors file.
HEADER_HEIGHTS = [0, 1, 2, 3, 17, 64, 100, 128, 170, 200, 255, 125552, 277647]
WINDOW = 256
FULL = dict(precompute=True, fold_constants=True, early_exit=True)


def engine(unroll, cores=1, fifo_depth=16, **switches):
    return MinerEngine(unroll=unroll, cores=cores, fifo_depth=fifo_depth, **{**FULL, **switches})


def header_jobs(seed=0):
    """Windows of WINDOW nonces around each real header's nonce, at a random offset."""
    rng = random.Random(seed)
    headers = {h: header for h, header, _ in bitcoin_headers()}
    jobs = []
    for job_id, height in enumerate(HEADER_HEIGHTS):
        nonce = header_nonce(headers[height])
        start = (nonce - rng.randrange(1, WINDOW - 1)) & MASK
        jobs.append(Job.from_header(headers[height], nonce_start=start,
                                    nonce_end=(start + WINDOW - 1) & MASK, job_id=job_id))
    return jobs


def random_job(rng, job_id, count, hit_rate_log2=3, start=None):
    """A random header's job whose target passes about one hash in 2**hit_rate_log2."""
    start = rng.getrandbits(32) if start is None else start
    return Job(tuple(rng.getrandbits(32) for _ in range(8)),
               tuple(rng.getrandbits(32) for _ in range(3)),
               target=(1 << (256 - hit_rate_log2)) - 1, nonce_start=start,
               nonce_end=(start + count - 1) & MASK, job_id=job_id)


def assert_results_match(run, jobs, early_exit=True):
    """Each job reports exactly the model's nonces, in scan order, then one DONE; nothing else."""
    expected = []
    for job in jobs:
        expected += [(ResultKind.NONCE, job.job_id, n) for n in job.scan(early_exit)]
        expected.append((ResultKind.DONE, job.job_id, job.nonce_end))
    assert [(r.kind, r.job_id, r.nonce) for r in run.results] == expected


# Real headers, and the throughput measured on the same runs.

@pytest.fixture(scope="module", params=[64, 8, 1], ids=lambda u: f"unroll{u}")
def header_run(request):
    dut = engine(request.param)
    return dut, header_jobs(), run_engine(dut, header_jobs())


def test_real_headers_are_found_in_their_windows(header_run):
    dut, jobs, run = header_run
    headers = {h: header for h, header, _ in bitcoin_headers()}
    for job, height in zip(jobs, HEADER_HEIGHTS):
        # The model finds the real nonce and nothing else in the window ...
        assert job.scan(early_exit=True) == [header_nonce(headers[height])]
    # ... and so does the gateware.
    assert_results_match(run, jobs)


def test_throughput_is_unroll_over_64_nonces_per_clock(header_run):
    dut, jobs, run = header_run
    assert run.hash_counts[-1][1] == WINDOW * len(jobs)
    # Within each job the counter steps by `cores` every 64/unroll clocks, with no gap: count the
    # clocks between a job's first and last checked nonce.
    period = 64 // dut.unroll
    measured_nonces = measured_clocks = 0
    counts = run.hash_counts[1:]
    for j in range(len(jobs)):
        steps = counts[j * WINDOW:(j + 1) * WINDOW]
        assert [h for _, h in steps] == list(range(j * WINDOW + 1, (j + 1) * WINDOW + 1))
        clocks = steps[-1][0] - steps[0][0]
        assert clocks == (WINDOW - 1) * period
        measured_nonces += WINDOW - 1
        measured_clocks += clocks
    assert measured_nonces >= 1000
    assert measured_nonces / measured_clocks == dut.unroll / 64


# Random jobs against the model, per configuration.

CONFIGS = [
    dict(unroll=64),
    dict(unroll=64, precompute=False),
    dict(unroll=64, fold_constants=False),
    dict(unroll=64, early_exit=False),
    dict(unroll=64, precompute=False, fold_constants=False, early_exit=False),
    dict(unroll=32, cores=2),
    dict(unroll=8),
    dict(unroll=8, cores=3, early_exit=False),
    dict(unroll=4, precompute=False, fold_constants=False),
    dict(unroll=2, cores=2),
    dict(unroll=1),
    dict(unroll=1, precompute=False, fold_constants=False, early_exit=False),
]


def config_id(config):
    return "-".join(f"{k}{int(v)}" for k, v in config.items())


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_random_jobs_report_exactly_the_model_nonces(config):
    rng = random.Random(config_id(config))
    dut = engine(**config)
    jobs = [random_job(rng, job_id, count) for job_id, count in [(1, 40), (2, 33), (3, 1)]]
    run = run_engine(dut, jobs)
    assert_results_match(run, jobs, early_exit=dut.early_exit)
    assert sum(job.nonce_end - job.nonce_start + 1 for job in jobs) == run.hash_counts[-1][1]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_converts_to_verilog(config):
    text = verilog.convert(engine(**config), name="nangua_miner", emit_src=False)
    assert "module nangua_miner" in text


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
    dut = engine(64)

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
