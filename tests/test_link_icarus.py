"""Icarus-compatible mode end to end in the Amaranth simulator with the real engine.

The real detect packet's nonce (000187a2) is 100,258 nonces in: minutes of Amaranth simulation,
so that test is marked slow (the cocotb/Verilator bench runs it by default). The default tests
use the same packets with an easier target (``icarus_target``), so replies come within a few
dozen nonces; which nonces must come back is computed with the golden model.
"""

import pytest

from nangua.hdl.link import protocol
from nangua.hdl.link.top import MinerLinkTop
from nangua.hdl.miner.model import Job, midstate, tail_words
from nangua.link import DETECT_NONCE, DETECT_PACKET, decode_work, encode_work

from link_sim import simulate, uart_receive_forever, uart_send
from test_link_data import headers

DIVISOR = 4
BAUD = 250_000
CLK = BAUD * DIVISOR
TIMEOUT_BITS = 30
#: Hashes whose top word is at most 0x07ffffff: one nonce in 32.
EASY_TARGET = (0x0800_0000 << 224) - 1


def hits(packet, count, target=EASY_TARGET):
    """The first ``count`` nonces the device must reply for ``packet``, from nonce 0 up."""
    job = Job(*decode_work(packet), target=target)
    found, nonce = [], 0
    while len(found) < count:
        if job.hit(nonce, early_exit=True):
            found.append(nonce)
        nonce += 1
    return found


def other_packet():
    header = headers()[7][1]
    return encode_work(midstate(header), tail_words(header))


def run(script, *, unroll=1, target=EASY_TARGET, wait_replies=0, limit=200_000):
    """Send ``script`` (bytes, or an int = idle bit times); then wait until ``wait_replies``
    replies have come. Returns the replies as nonces and the top's timeout counter."""
    top = MinerLinkTop(protocol="icarus", unroll=unroll, clk_freq=CLK, baud=BAUD,
                       timeout_bits=TIMEOUT_BITS, icarus_target=target)
    out, counters = [], {}

    async def bench(ctx):
        for item in script:
            if isinstance(item, int):
                await ctx.tick().repeat(item * DIVISOR)
            else:
                await uart_send(ctx, top.rx, item, DIVISOR)
        waited = 0
        while len(out) < 4 * wait_replies:
            assert waited < limit, f"only {len(out) // 4} replies after {limit} clocks"
            await ctx.tick().repeat(64)
            waited += 64
        counters["timeouts"] = ctx.get(top.link.timeouts)
        counters["jobs"] = ctx.get(top.link.jobs_accepted)

    async def receive(ctx):
        await uart_receive_forever(ctx, top.tx, DIVISOR, out)

    simulate(top, bench, background=[receive], name="link_icarus")
    assert None not in out
    replies = [int.from_bytes(bytes(out[i:i + 4]), "big") for i in range(0, len(out) - 3, 4)]
    return replies, counters


def test_replies_are_the_model_nonces_from_zero_up():
    expected = hits(DETECT_PACKET, 3)
    replies, counters = run([DETECT_PACKET], wait_replies=3)
    assert replies[:3] == expected
    assert counters == {"timeouts": 0, "jobs": 1}


def test_new_packet_aborts_the_scan_and_restarts_from_zero():
    first, second = DETECT_PACKET, other_packet()
    replies, counters = run([first, 800, second], wait_replies=6)
    expected_first, expected_second = hits(first, 40), hits(second, 40)
    split = next(i for i, nonce in enumerate(replies) if nonce not in expected_first)
    assert split >= 1, "the first packet produced no reply before the second arrived"
    assert replies[:split] == expected_first[:split]
    assert replies[split:] == expected_second[:len(replies) - split]
    assert len(replies) - split >= 2
    assert counters["jobs"] == 2


def test_partial_packet_is_dropped_after_the_timeout():
    replies, counters = run([other_packet()[:30], TIMEOUT_BITS + 20, DETECT_PACKET],
                            wait_replies=2)
    assert replies[:2] == hits(DETECT_PACKET, 2)
    assert counters == {"timeouts": 1, "jobs": 1}


@pytest.mark.slow
def test_detect_packet_answers_000187a2():
    replies, _ = run([DETECT_PACKET], unroll=64, target=protocol.ICARUS_TARGET, wait_replies=1,
                     limit=200_000)
    assert replies == [DETECT_NONCE]
