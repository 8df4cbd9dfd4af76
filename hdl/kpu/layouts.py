"""Amaranth layouts of the KPU, built from :mod:`.descriptor` (the one place bit positions live).

- :data:`DescriptorLayout`: the 12 × 64-bit layer descriptor as one 768-bit
  :class:`~amaranth.lib.data.FlexibleLayout` (reserved bits have no field). Fields with
  ``minus_one`` hold ``value − 1`` exactly as in the words.
- :data:`WORD_LAYOUTS`: the fields of each word on their own, one 64-bit layout a word.
- :data:`BatchNormLayout`, :data:`ActSegmentLayout`: one 64-bit side-table entry each.
- :class:`GatewareReason`: reason codes the gateware reports, :class:`.descriptor.Reason` plus
  the limits of one gateware configuration.
"""

import enum

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .descriptor import FIELDS, WORD_NAMES, Reason

__all__ = ["WORD_BITS", "DESCRIPTOR_WORDS", "DESCRIPTOR_BITS", "DescriptorLayout", "WORD_LAYOUTS",
           "BatchNormLayout", "ActSegmentLayout", "GatewareReason", "REASON_BITS"]

#: Bits of one descriptor word and of one side-table entry.
WORD_BITS = 64
#: Words of one layer descriptor.
DESCRIPTOR_WORDS = len(WORD_NAMES)
DESCRIPTOR_BITS = WORD_BITS * DESCRIPTOR_WORDS


def _shape(field):
    return signed(field.width) if field.signed else unsigned(field.width)


DescriptorLayout = data.FlexibleLayout(DESCRIPTOR_BITS, {
    field.name: data.Field(_shape(field), WORD_BITS * field.word + field.lsb) for field in FIELDS
})

#: The fields of word ``i`` alone: ``WORD_LAYOUTS[i]``.
WORD_LAYOUTS = tuple(
    data.FlexibleLayout(WORD_BITS, {field.name: data.Field(_shape(field), field.lsb)
                                    for field in FIELDS if field.word == word})
    for word in range(DESCRIPTOR_WORDS)
)

# Side-table entries, as packed by :func:`.descriptor.pack_batchnorm` / ``pack_activation``.
BatchNormLayout = data.StructLayout({
    "mul": signed(24),
    "add": signed(32),
    "shift": unsigned(4),
    "reserved": unsigned(4),
})

ActSegmentLayout = data.StructLayout({
    "shift": unsigned(8),
    "y_mul": signed(16),
    "x_start": signed(36),
    "reserved": unsigned(4),
})


class GatewareReason(enum.IntEnum):
    """Error reason codes of the gateware: every :class:`.descriptor.Reason`, then one more.

    ``CONFIG_LIMIT`` is reported (only when the model's checks all pass) for a descriptor that
    is valid for the K210 but exceeds this gateware configuration: an input wider than
    ``max_width``, more input channels than ``max_entries`` (3×3) or ``max_channels_1x1``
    (1×1) of the engine, or 16-bit weights (``eight_bit_mode`` = 0).
    """
    locals().update({reason.name: int(reason) for reason in Reason})
    CONFIG_LIMIT = max(Reason) + 1


#: Bits of the reason code in the error status register.
REASON_BITS = 8
