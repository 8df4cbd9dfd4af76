"""Feature-map layout of the K210 KPU RAM: C×H×W uint8 tensors in 64-byte lines.

Pure Python + NumPy, no Amaranth. The layout depends only on the width ``W`` (as in nncase's
``get_kpu_row_layout``):

======== ======================= ============ ==========================
width    channels per line group  row pitch    lines per image row
======== ======================= ============ ==========================
W ≤ 16   4 (``groups``)           16 bytes     1 (``row_len``)
W ≤ 32   2                        32 bytes     1
W > 32   1                        64 bytes     ⌈W/64⌉
======== ======================= ============ ==========================

Channel ``c``, row ``y``, column ``x`` of a map stored at line ``base`` lives at byte::

    64 · (base + (c // groups) · row_len · H + y · row_len) + (c % groups) · pitch + x

so ``groups`` channels share each line, side by side, and a block of ``groups`` channels takes
``row_len · H`` lines (the descriptor's ``channel_switch_addr``). Bytes of a line that no channel
uses (``x ≥ W`` inside a pitch, unused group slots) are never read, and writing a map leaves them
untouched.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["LINE_BYTES", "RowLayout", "row_layout", "fmap_lines", "write_fmap", "read_fmap",
           "fmap_byte_offsets"]

#: Bytes in one KPU RAM line; descriptor addresses count lines.
LINE_BYTES = 64


@dataclass(frozen=True)
class RowLayout:
    """How one map width is laid out: ``groups`` channels per line at ``pitch`` bytes apart,
    ``row_len`` lines per image row."""
    groups: int
    row_len: int
    pitch: int


def row_layout(width):
    """Return the :class:`RowLayout` of maps ``width`` pixels wide.

    Raises
    ------
    ValueError
        If ``width`` is not a positive integer.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"Feature-map width must be a positive integer, not {width!r}")
    if width <= 16:
        return RowLayout(groups=4, row_len=1, pitch=16)
    if width <= 32:
        return RowLayout(groups=2, row_len=1, pitch=32)
    return RowLayout(groups=1, row_len=(width + LINE_BYTES - 1) // LINE_BYTES, pitch=LINE_BYTES)


def fmap_lines(channels, height, width):
    """Number of 64-byte lines a ``channels``×``height``×``width`` map occupies."""
    layout = row_layout(width)
    blocks = (channels + layout.groups - 1) // layout.groups
    return blocks * layout.row_len * height


def fmap_byte_offsets(channels, height, width):
    """Byte offsets (from the map's first line) of every element, as a C×H×W int64 array."""
    layout = row_layout(width)
    c = np.arange(channels, dtype=np.int64)[:, None, None]
    y = np.arange(height, dtype=np.int64)[None, :, None]
    x = np.arange(width, dtype=np.int64)[None, None, :]
    line = (c // layout.groups) * layout.row_len * height + y * layout.row_len
    return line * LINE_BYTES + (c % layout.groups) * layout.pitch + x


def _ram_view(ram):
    if isinstance(ram, np.ndarray):
        if ram.dtype != np.uint8 or ram.ndim != 1:
            raise ValueError(f"KPU RAM must be a 1-D uint8 array, not {ram.dtype} with shape "
                             f"{ram.shape}")
        return ram
    return np.frombuffer(ram, dtype=np.uint8)


def _check_range(ram, line_addr, channels, height, width):
    if not isinstance(line_addr, int) or line_addr < 0:
        raise ValueError(f"Line address must be a non-negative integer, not {line_addr!r}")
    end = (line_addr + fmap_lines(channels, height, width)) * LINE_BYTES
    if end > len(ram):
        raise ValueError(f"Feature map {channels}×{height}×{width} at line {line_addr} ends at "
                         f"byte {end}, beyond the {len(ram)}-byte RAM")


def write_fmap(ram, line_addr, tensor):
    """Store a C×H×W uint8 ``tensor`` into ``ram`` (bytearray or uint8 array) at ``line_addr``.

    Only the tensor's own bytes are written; the unused bytes of each line keep their value.

    Raises
    ------
    ValueError
        If the tensor is not 3-D uint8, or the map does not fit in ``ram``.
    """
    tensor = np.asarray(tensor)
    if tensor.ndim != 3 or tensor.dtype != np.uint8:
        raise ValueError(f"Feature map must be a C×H×W uint8 array, not {tensor.dtype} with "
                         f"shape {tensor.shape}")
    view = _ram_view(ram)
    _check_range(view, line_addr, *tensor.shape)
    offsets = fmap_byte_offsets(*tensor.shape) + line_addr * LINE_BYTES
    view[offsets] = tensor


def read_fmap(ram, line_addr, channels, height, width):
    """Load a ``channels``×``height``×``width`` uint8 map from ``ram`` at ``line_addr``.

    Raises
    ------
    ValueError
        If the map does not fit in ``ram``.
    """
    view = _ram_view(ram)
    _check_range(view, line_addr, channels, height, width)
    return view[fmap_byte_offsets(channels, height, width) + line_addr * LINE_BYTES].copy()
