"""The classic FPGA "Icarus" serial protocol (cgminer/bfgminer ``driver-icarus.c``), host side.

A 64-byte work packet: the midstate with its word order reversed (H7..H0, each big-endian),
20 zero bytes, then the header's bytes 64..75 reversed (W2, W1, W0, each big-endian). The device
replies with the 4-byte nonce (W3, big-endian) of every hash whose H7 is 0.
"""

from nangua.hdl.link.protocol import ICARUS_NONCE_BYTES, ICARUS_WORK_BYTES

MIDSTATE_BYTES = 32
ZERO_BYTES = 20
TAIL_BYTES = 12

#: Detect packet of block 171874 (cgminer's), and the nonce the device must answer.
DETECT_PACKET = bytes.fromhex(
    "4679ba4ec99876bf4bfe086082b400254df6c356451471139a3afa71e48f544a"
    "0000000000000000000000000000000000000000"
    "87320b1a1426674f2fa722ce")
DETECT_NONCE = 0x000187A2


def encode_work(midstate, tail):
    """Work packet for midstate H0..H7 and tail W0..W2 (tuples of 32-bit words)."""
    if len(midstate) != 8 or len(tail) != 3:
        raise ValueError("an Icarus work packet needs an 8-word midstate and a 3-word tail")
    return (b"".join(word.to_bytes(4, "big") for word in reversed(midstate))
            + bytes(ZERO_BYTES)
            + b"".join(word.to_bytes(4, "big") for word in reversed(tail)))


def decode_work(packet):
    """(midstate H0..H7, tail W0..W2) of a work packet.

    Raises
    ------
    ValueError
        If the packet is not 64 bytes long.
    """
    packet = bytes(packet)
    if len(packet) != ICARUS_WORK_BYTES:
        raise ValueError(f"an Icarus work packet has {ICARUS_WORK_BYTES} bytes, "
                         f"not {len(packet)}")
    words = [int.from_bytes(packet[i:i + 4], "big") for i in range(0, MIDSTATE_BYTES, 4)]
    tail = [int.from_bytes(packet[i:i + 4], "big")
            for i in range(MIDSTATE_BYTES + ZERO_BYTES, ICARUS_WORK_BYTES, 4)]
    return tuple(reversed(words)), tuple(reversed(tail))


def decode_nonce(reply):
    """The nonce (W3) of a 4-byte reply."""
    reply = bytes(reply)
    if len(reply) != ICARUS_NONCE_BYTES:
        raise ValueError(f"an Icarus reply has {ICARUS_NONCE_BYTES} bytes, not {len(reply)}")
    return int.from_bytes(reply, "big")
