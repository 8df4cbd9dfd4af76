"""``nangua demo``: the main job on its embedded defaults, end to end in simulation."""

import time
from pathlib import Path

from amaranth.back import verilog

from ..options import add_miner_options, miner_parameters

#: Bitcoin's genesis block header (wire order) and its block hash (display order), as published.
GENESIS_HEADER = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
    "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c")
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="generate the miner's Verilog and mine the genesis block in simulation",
        description="Generate the miner's Verilog, then mine Bitcoin's genesis block in the "
                    "Amaranth simulator over a window of nonces around its real nonce.")
    add_miner_options(parser)
    parser.add_argument("--window", type=int, default=512,
                        help="nonces to scan around the real nonce (default 512)")
    parser.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    parser.set_defaults(func=run)


def run(args):
    from ..hdl.miner.engine import MinerEngine
    from ..hdl.miner.model import MASK, Job, display_hash, header_nonce, nonce_field
    from ..sim.engine_tb import run_engine

    if args.window < 1:
        raise ValueError(f"--window must be at least 1, not {args.window}")
    params = miner_parameters(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    engine = MinerEngine(**params)
    print(f"nangua demo: SHA-256d miner, unroll {args.unroll}, {args.cores} core(s), "
          f"{engine.nonces_per_clock:g} nonces/clock")
    started = time.monotonic()
    verilog_path = out / "nangua_miner.v"
    text = verilog.convert(engine, name="nangua_miner", emit_src=False)
    verilog_path.write_text(text)
    print(f"1. Verilog: {verilog_path} ({len(text.splitlines()):,} lines, "
          f"{time.monotonic() - started:.1f} s)")

    real_nonce = header_nonce(GENESIS_HEADER)
    start = (real_nonce - args.window // 2) & MASK
    job = Job.from_header(GENESIS_HEADER, nonce_start=start,
                          nonce_end=(start + args.window - 1) & MASK, job_id=1)
    print(f"2. Mining the genesis block in the Amaranth simulator: nonces {start:#010x}.."
          f"{job.nonce_end:#010x}, target {job.target:#066x}")
    started = time.monotonic()
    engine = MinerEngine(**params)
    run_result = run_engine(engine, [job])
    elapsed = time.monotonic() - started
    found = run_result.nonces(job.job_id)
    print(f"   simulated {run_result.cycle:,} clocks in {elapsed:.1f} s; results: "
          + ", ".join(f"{r.kind.name} {r.nonce:#010x}" for r in run_result.results))
    if not found:
        print("   no nonce found: the gateware disagrees with the chain")
        return 1
    for nonce in found:
        digest = job.digest(nonce)
        print(f"   found nonce {nonce:#010x} (header nonce field {nonce_field(nonce)})")
        print(f"   its hash     {display_hash(digest)}")
        print(f"   block hash   {GENESIS_HASH}  "
              + ("(match)" if display_hash(digest) == GENESIS_HASH else "(MISMATCH)"))
    return 0 if [display_hash(job.digest(n)) for n in found] == [GENESIS_HASH] else 1
