"""Real Bitcoin headers found by the miner engine in the Amaranth simulator, and its throughput
measured on the same runs: unroll 64, 8 and 1 with every optimisation."""

import pytest

from nangua.hdl.miner.model import header_nonce
from nangua.sim.engine_tb import run_engine

from miner_jobs import HEADER_HEIGHTS, WINDOW, engine, header_jobs, assert_results_match
from vectors import bitcoin_headers


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
