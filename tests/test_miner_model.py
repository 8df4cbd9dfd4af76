"""The mining golden model against outside truth: real Bitcoin headers, hashlib, known vectors."""

import hashlib
import random
from fractions import Fraction

import pytest

from nangua.hdl.miner import model
from nangua.hdl.sha256.model import bytes_be, compress

from vectors import bitcoin_headers


def sha256d(data):
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def test_vector_file_has_all_258_headers():
    heights = [h for h, _, _ in bitcoin_headers()]
    assert heights == list(range(256)) + [125552, 277647]


@pytest.mark.parametrize("height,header,display", bitcoin_headers(),
                         ids=[f"height{h}" for h, _, _ in bitcoin_headers()])
def test_real_header_meets_own_target_and_neighbours_miss(height, header, display):
    job = model.Job.from_header(header)
    nonce = model.header_nonce(header)
    digest = job.digest(nonce)
    assert bytes_be(digest) == sha256d(header)
    assert model.display_hash(digest) == display
    assert model.meets_target(digest, job.target)
    assert job.hit(nonce) and job.hit(nonce, early_exit=True)
    for neighbour in ((nonce - 1) & model.MASK, (nonce + 1) & model.MASK):
        assert not job.hit(neighbour)
        assert not model.meets_target(sha256d(model.with_nonce(header, neighbour)), job.target)


def test_midstate_and_tail_describe_the_header():
    header = bitcoin_headers()[0][1]
    # The first hash of a header is one more compression from the midstate (hashlib agrees).
    block2 = model.second_block(model.tail_words(header), model.header_nonce(header))
    assert (bytes_be(compress(model.midstate(header), block2))
            == hashlib.sha256(header).digest())
    assert model.tail_words(header) == (0x4B1E5E4A, 0x29AB5F49, 0xFFFF001D)
    assert model.header_nonce(header) == 0x1DAC2B7C
    assert model.nonce_field(0x1DAC2B7C) == 2083236893  # the genesis nonce as explorers show it


def test_early_exit_h7_equals_full_h7():
    rng = random.Random(1)
    for _ in range(20):
        mid = tuple(rng.getrandbits(32) for _ in range(8))
        tail = tuple(rng.getrandbits(32) for _ in range(3))
        nonce = rng.getrandbits(32)
        assert (model.second_hash_h7_early(mid, tail, nonce)
                == model.double_hash_words(mid, tail, nonce)[7])


def test_nbits_to_target():
    assert model.nbits_to_target(0x1D00FFFF) == 0xFFFF << 208
    assert model.nbits_to_target(0x1B0404CB) == 0x0404CB << (8 * 0x18)
    assert model.nbits_to_target(0x03123456) == 0x123456
    assert model.nbits_to_target(0x02123456) == 0x1234
    with pytest.raises(ValueError, match=r"^nBits 0x1d80ffff encodes a negative target$"):
        model.nbits_to_target(0x1D80FFFF)
    with pytest.raises(ValueError, match=r"^nBits 0xff7fffff encodes a target above 2\*\*256$"):
        model.nbits_to_target(0xFF7FFFFF)


def test_difficulty_to_target():
    assert model.difficulty_to_target(1) == model.DIFF1_TARGET
    assert model.difficulty_to_target(2) == model.DIFF1_TARGET // 2
    # Fractional difficulties give easier targets; the tiniest saturate at 2**256 - 1.
    assert model.difficulty_to_target("0.5") == model.DIFF1_TARGET * 2
    assert model.difficulty_to_target(Fraction(1, 1 << 20)) == model.DIFF1_TARGET << 20
    assert model.difficulty_to_target(1e-70) == model.MAX_TARGET
    assert model.target_to_difficulty(model.DIFF1_TARGET) == 1.0
    for bad, message in [(0, "difficulty must be positive, not 0"),
                         (-3, "difficulty must be positive, not -3"),
                         ("lots", "difficulty 'lots' is not a number")]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            model.difficulty_to_target(bad)


def test_nonce_ranges_wrap():
    assert model.nonce_count(5, 5) == 1
    assert model.nonce_count(0, model.MASK) == 1 << 32
    assert model.nonce_count(0xFFFF_FFFE, 1) == 4
    assert list(model.range_nonces(0xFFFF_FFFE, 1)) == [0xFFFF_FFFE, 0xFFFF_FFFF, 0, 1]


def test_job_rejects_malformed_fields():
    with pytest.raises(ValueError, match=r"^a job has an 8-word midstate and a 3-word tail$"):
        model.Job(midstate=(0,) * 7, tail=(0,) * 3, target=1)
    with pytest.raises(ValueError, match=r"^0x100000000 is not a 32-bit word$"):
        model.Job(midstate=(0,) * 8, tail=(0, 0, 1 << 32), target=1)
    with pytest.raises(ValueError, match=r"^the target must be a 256-bit unsigned number$"):
        model.Job(midstate=(0,) * 8, tail=(0,) * 3, target=1 << 256)
    with pytest.raises(ValueError, match=r"^a block header has 80 bytes, not 79$"):
        model.Job.from_header(bytes(79))


# The vectors of tests/data/mining.md.

def test_classic_fpga_miner_vector():
    header = bytes.fromhex(
        "010000007cc5c24c39fd05792c2865999e25fe87e066a37d7a08dc351f1400000000000049b6276425052b"
        "2fc24bfb784eca55369b2b9e8b4180c869778cacb2bed171159395e64d2194261a0e33337a")
    reversed_midstate = bytes_be(reversed(model.midstate(header)))
    assert reversed_midstate.hex() == (
        "228ea4732a3c9ba860c009cda7252b9161a5e75ec8c582a5f106abb3af41f790")
    assert bytes_be(reversed(model.tail_words(header))).hex() == "2194261a9395e64dbed17115"
    job = model.Job.from_header(header, target=model.DIFF1_TARGET)
    assert model.header_nonce(header) == 0x0E33337A
    assert job.digest(0x0E33337A)[7] == 0
    assert job.hit(0x0E33337A)


def test_icarus_detect_packet_nonce():
    midstate_reversed = bytes.fromhex(
        "4679ba4ec99876bf4bfe086082b400254df6c356451471139a3afa71e48f544a")
    tail_reversed = bytes.fromhex("87320b1a1426674f2fa722ce")
    mid = tuple(reversed([int.from_bytes(midstate_reversed[i:i + 4], "big")
                          for i in range(0, 32, 4)]))
    tail = tuple(reversed([int.from_bytes(tail_reversed[i:i + 4], "big")
                           for i in range(0, 12, 4)]))
    assert model.double_hash_words(mid, tail, 0x000187A2)[7] == 0
    assert model.double_hash_words(mid, tail, 0x000187A3)[7] != 0


def test_recorded_stratum_share():
    header = bytes.fromhex(
        "00200020f2921517920e7423e6f623d22725ff8b4facf79a1e45462202000000000000006b5d684a704b4abe"
        "62b2375c5326d1fc1dbb61168aff84e920ba28968bf1075fecf3b364f8952419910d46ed")
    digest = sha256d(header)
    assert digest[::-1].hex() == "000000000061d52983863e5c424c00d9e0981874fddf6a8493433e73928a3e4e"
    # mining.submit carried nonce "ed460d91": the header's nonce field as a little-endian uint32.
    assert f"{model.nonce_field(model.header_nonce(header)):08x}" == "ed460d91"
    difficulty = model.target_to_difficulty(model.hash_value(digest))
    assert 669 < difficulty < 671
    assert model.meets_target(digest, model.difficulty_to_target(669))
