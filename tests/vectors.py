"""Readers for the outside-truth files in ``tests/data`` (see its README)."""

from pathlib import Path

DATA = Path(__file__).parent / "data"


def nist_vectors(name):
    """(message bytes, digest bytes) pairs of a NIST CAVP SHAVS ``.rsp`` file."""
    vectors, length, message = [], None, None
    for line in (DATA / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("Len ="):
            length = int(line.split("=")[1])
        elif line.startswith("Msg ="):
            message = bytes.fromhex(line.split("=")[1].strip())[:length // 8]
        elif line.startswith("MD ="):
            vectors.append((message, bytes.fromhex(line.split("=")[1].strip())))
    return vectors


def bitcoin_headers():
    """(height, 80-byte header, display hash hex) of every real header in the vectors file."""
    headers = []
    for line in (DATA / "bitcoin_headers.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        height, header, display = line.split()
        headers.append((int(height), bytes.fromhex(header), display))
    return headers


def header_at(height):
    return next(header for h, header, _ in bitcoin_headers() if h == height)
