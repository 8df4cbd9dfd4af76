"""Jobs, configurations and checks shared by the miner engine tests."""

import random

from nangua.hdl.miner.engine import MinerEngine
from nangua.hdl.miner.layouts import ResultKind
from nangua.hdl.miner.model import MASK, Job, header_nonce

from vectors import bitcoin_headers

#: The genesis block and a dozen more real headers, spread over the vectors file.
HEADER_HEIGHTS = [0, 1, 2, 3, 17, 64, 100, 128, 170, 200, 255, 125552, 277647]
WINDOW = 200
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


#: Configurations simulated with random jobs and converted to Verilog.
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
