"""The SHA-256 golden model against outside truth: NIST CAVP vectors and hashlib."""

import hashlib
import random

import pytest

from nangua.hdl.sha256 import model

from vectors import nist_vectors


@pytest.mark.parametrize("name", ["SHA256ShortMsg.rsp", "SHA256LongMsg.rsp"])
def test_nist_vectors(name):
    vectors = nist_vectors(name)
    assert len(vectors) == 65 if "Short" in name else len(vectors) == 64
    for message, digest in vectors:
        assert model.sha256(message) == digest, message.hex()


@pytest.mark.parametrize("seed", range(3))
def test_matches_hashlib_on_random_messages(seed):
    rng = random.Random(seed)
    for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200, rng.randrange(1000)]:
        message = rng.randbytes(length)
        assert model.sha256(message) == hashlib.sha256(message).digest()
        assert model.sha256d(message) == hashlib.sha256(hashlib.sha256(message).digest()).digest()


def test_padding_fills_whole_blocks_with_bit_length():
    for length in range(0, 130):
        padded = model.pad(b"\xab" * length)
        assert len(padded) % 64 == 0
        assert padded[length] == 0x80
        assert int.from_bytes(padded[-8:], "big") == 8 * length
        assert len(padded) - length <= 64 + 8


def test_message_schedule_rejects_wrong_block_size():
    with pytest.raises(ValueError, match=r"^a block has 16 words, not 15$"):
        model.message_schedule([0] * 15)


def test_round_constants_are_cube_root_fractions():
    primes = [p for p in range(2, 312) if all(p % d for d in range(2, p))][:64]
    for k, p in zip(model.K, primes):
        # First 32 bits of the fractional part of the cube root, computed exactly with integers.
        root = round(p ** (1 / 3) * 2 ** 32)
        for candidate in (root - 1, root, root + 1):
            if candidate ** 3 <= p << 96 < (candidate + 1) ** 3:
                break
        assert k == candidate & model.MASK
