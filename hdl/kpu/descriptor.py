"""K210 KPU layer descriptors (12 × 64-bit words), side tables and reason codes.

Pure Python, no Amaranth. :data:`FIELDS` is the one place the bit positions live; the gateware
builds its layouts from it.

Value convention
----------------
A :class:`LayerDescriptor` holds *real* values; the ``−1`` encoding of the hardware lives only in
:meth:`LayerDescriptor.to_words` / :meth:`LayerDescriptor.from_words`. The fields with
``minus_one=True`` in :data:`FIELDS` are stored as ``value − 1``:

- ``i_ch_num``, ``o_ch_num``, ``o_ch_num_coef``: channel counts (1..1024);
- ``i_row_wid``, ``o_row_wid``: widths (1..1024); ``i_col_high``, ``o_col_high``: heights
  (1..512);
- ``load_time``: the number of weight loads (1..64);
- ``channel_byte_num``: output bytes per channel, W·H (1..65536);
- ``dma_total_byte``: output bytes in all, W·H·C (1..2³²).

Signed fields (``arg_w``, ``arg_x``: 24 bits; ``arg_add``: 40 bits) are two's complement in the
word and Python ints in the object. Every other field is an unsigned integer of its width.
"""

import enum
from dataclasses import dataclass, fields as dataclass_fields
from typing import NamedTuple

from .featuremap import fmap_lines, row_layout

__all__ = ["Field", "FIELDS", "WORD_NAMES", "Reason", "KernelType", "PoolType",
           "LayerDescriptor", "make_layer", "pool_stride", "weight_bytes", "WEIGHT_LOAD_LIMIT",
           "BN_ENTRY_BYTES", "ACT_TABLE_BYTES", "pack_batchnorm", "unpack_batchnorm",
           "pack_activation", "unpack_activation"]


class Field(NamedTuple):
    """One descriptor field: word index, name, least significant bit, width, two's complement,
    and whether the word holds ``value − 1``."""
    word: int
    name: str
    lsb: int
    width: int
    signed: bool = False
    minus_one: bool = False


#: Names of the 12 words, in FIFO order (spelling of the Kendryte sources).
WORD_NAMES = (
    "interrupt_enabe", "image_addr", "image_channel_num", "image_size", "kernel_pool_type_cfg",
    "kernel_load_cfg", "kernel_offset", "kernel_calc_type_cfg", "write_back_cfg", "conv_value",
    "conv_value2", "dma_parameter",
)

#: Every public field of the 12 words. Bits not listed are reserved: written as 0, ignored on read.
FIELDS = (
    Field(0, "int_en", 0, 1),
    Field(0, "ram_flag", 1, 1),
    Field(0, "full_add", 2, 1),
    Field(0, "depth_wise_layer", 3, 1),
    Field(1, "image_src_addr", 0, 15),
    Field(1, "image_dst_addr", 32, 15),
    Field(2, "i_ch_num", 0, 10, minus_one=True),
    Field(2, "o_ch_num", 32, 10, minus_one=True),
    Field(2, "o_ch_num_coef", 48, 10, minus_one=True),
    Field(3, "i_row_wid", 0, 10, minus_one=True),
    Field(3, "i_col_high", 10, 9, minus_one=True),
    Field(3, "o_row_wid", 32, 10, minus_one=True),
    Field(3, "o_col_high", 42, 9, minus_one=True),
    Field(4, "kernel_type", 0, 3),
    Field(4, "pad_type", 3, 1),
    Field(4, "pool_type", 4, 4),
    Field(4, "first_stride", 8, 1),
    Field(4, "bypass_conv", 9, 1),
    Field(4, "load_para", 10, 1),
    Field(4, "dma_burst_size", 16, 8),
    Field(4, "pad_value", 24, 8),
    Field(4, "bwsx_base_addr", 32, 32),
    Field(5, "load_coor", 0, 1),
    Field(5, "load_time", 1, 6, minus_one=True),
    Field(5, "para_size", 15, 17),
    Field(5, "para_start_addr", 32, 32),
    Field(6, "coef_column_offset", 0, 4),
    Field(6, "coef_row_offset", 4, 12),
    Field(7, "channel_switch_addr", 0, 15),
    Field(7, "row_switch_addr", 16, 4),
    Field(7, "coef_size", 20, 8),
    Field(7, "coef_group", 28, 3),
    Field(7, "load_act", 31, 1),
    Field(7, "active_addr", 32, 32),
    Field(8, "wb_channel_switch_addr", 0, 15),
    Field(8, "wb_row_switch_addr", 16, 4),
    Field(8, "wb_group", 20, 3),
    Field(9, "shr_w", 0, 4),
    Field(9, "shr_x", 4, 4),
    Field(9, "arg_w", 8, 24, signed=True),
    Field(9, "arg_x", 32, 24, signed=True),
    Field(10, "arg_add", 0, 40, signed=True),
    Field(11, "send_data_out", 0, 1),
    Field(11, "channel_byte_num", 16, 16, minus_one=True),
    Field(11, "dma_total_byte", 32, 32, minus_one=True),
)

_FIELD_BY_NAME = {f.name: f for f in FIELDS}


def _field_range(field):
    """Inclusive range of the real value a field can hold."""
    if field.signed:
        return -(1 << (field.width - 1)), (1 << (field.width - 1)) - 1
    low = 1 if field.minus_one else 0
    return low, (1 << field.width) - 1 + low


class Reason(enum.IntEnum):
    """Why a descriptor cannot run; the gateware reports the same numbers in its error status.

    :func:`nangua.hdl.kpu.model.check` returns the first failing reason in this order.
    """
    #: The descriptor can run.
    OK = 0
    #: ``kernel_type`` is neither 0 (1×1) nor 1 (3×3).
    KERNEL_TYPE = 1
    #: ``pool_type`` is above 9.
    POOL_TYPE = 2
    #: A field whose meaning is unknown is set (``first_stride``, ``bypass_conv``, ``pad_type``,
    #: ``ram_flag``, ``full_add``, ``coef_column_offset``, ``coef_row_offset``, ``coef_size``)
    #: or a load flag nncase always sets is clear (``load_para``, ``load_coor``, ``load_act``).
    UNSUPPORTED_MODE = 3
    #: Depthwise layer whose input and output channel counts differ.
    CHANNELS = 4
    #: Output size is not the input size divided by the pool stride.
    OUTPUT_SIZE = 5
    #: Layout fields disagree with the widths and heights (``row_switch_addr``,
    #: ``channel_switch_addr``, ``coef_group``, ``wb_*``, ``channel_byte_num``,
    #: ``dma_total_byte``), or a row is too long for ``row_switch_addr``.
    LAYOUT = 6
    #: Weight loads disagree with the channels (``o_ch_num_coef``, ``load_time``, ``para_size``).
    WEIGHT_LOADS = 7
    #: The input map extends past the end of the KPU RAM.
    SRC_RANGE = 8
    #: The output map extends past the end of the KPU RAM.
    DST_RANGE = 9
    #: Input and output maps share at least one line.
    OVERLAP = 10
    #: Weights, batch-norm table or activation table extend past the end of the weight memory,
    #: or a table (``bwsx_base_addr``, ``active_addr``) is not 8-byte aligned.
    WEIGHT_RANGE = 11


class KernelType(enum.IntEnum):
    """``kernel_type`` values."""
    K1X1 = 0
    K3X3 = 1


class PoolType(enum.IntEnum):
    """``pool_type`` values (nncase's ``kpu_pool_type_t``)."""
    BYPASS = 0
    MAX_2_S2 = 1
    MEAN_2_S2 = 2
    MAX_4_S4 = 3
    MEAN_4_S4 = 4
    LEFT_TOP_2_S2 = 5
    RIGHT_TOP_2_S2 = 6
    LEFT_TOP_4_S4 = 7
    MEAN_2_S1 = 8
    MAX_2_S1 = 9


_POOL_STRIDE = {0: 1, 1: 2, 2: 2, 3: 4, 4: 4, 5: 2, 6: 2, 7: 4, 8: 1, 9: 1}


def pool_stride(pool_type):
    """Stride (output size = input size // stride) of a pool type.

    Raises
    ------
    ValueError
        If ``pool_type`` is not 0..9.
    """
    if pool_type not in _POOL_STRIDE:
        raise ValueError(f"Pool type must be 0..9, not {pool_type!r}")
    return _POOL_STRIDE[pool_type]


@dataclass
class LayerDescriptor:
    """One KPU layer: every public field of the 12 words, with real (not ``−1``) values.

    Build consistent descriptors with :func:`make_layer`; this class only checks that each
    value fits its field (in :meth:`to_words`).
    """
    int_en: int = 0
    ram_flag: int = 0
    full_add: int = 0
    depth_wise_layer: int = 0
    image_src_addr: int = 0
    image_dst_addr: int = 0
    i_ch_num: int = 1
    o_ch_num: int = 1
    o_ch_num_coef: int = 1
    i_row_wid: int = 1
    i_col_high: int = 1
    o_row_wid: int = 1
    o_col_high: int = 1
    kernel_type: int = 0
    pad_type: int = 0
    pool_type: int = 0
    first_stride: int = 0
    bypass_conv: int = 0
    load_para: int = 0
    dma_burst_size: int = 0
    pad_value: int = 0
    bwsx_base_addr: int = 0
    load_coor: int = 0
    load_time: int = 1
    para_size: int = 0
    para_start_addr: int = 0
    coef_column_offset: int = 0
    coef_row_offset: int = 0
    channel_switch_addr: int = 0
    row_switch_addr: int = 0
    coef_size: int = 0
    coef_group: int = 0
    load_act: int = 0
    active_addr: int = 0
    wb_channel_switch_addr: int = 0
    wb_row_switch_addr: int = 0
    wb_group: int = 0
    shr_w: int = 0
    shr_x: int = 0
    arg_w: int = 0
    arg_x: int = 0
    arg_add: int = 0
    send_data_out: int = 0
    channel_byte_num: int = 1
    dma_total_byte: int = 1

    def to_words(self):
        """Encode as the 12 64-bit words (ints), in FIFO order.

        Raises
        ------
        ValueError
            If a value does not fit its field, e.g.
            ``"i_ch_num must be an integer in 1..1024, not 0"``.
        """
        words = [0] * len(WORD_NAMES)
        for f in FIELDS:
            value = getattr(self, f.name)
            low, high = _field_range(f)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{f.name} must be an integer in {low}..{high}, not {value!r}")
            if f.minus_one:
                value -= 1
            words[f.word] |= (value & ((1 << f.width) - 1)) << f.lsb
        return words

    @classmethod
    def from_words(cls, words):
        """Decode 12 64-bit words; reserved bits are ignored.

        Raises
        ------
        ValueError
            If ``words`` is not 12 integers in ``0..2**64-1``.
        """
        words = list(words)
        if len(words) != len(WORD_NAMES):
            raise ValueError(f"A layer descriptor has {len(WORD_NAMES)} words, not {len(words)}")
        for index, word in enumerate(words):
            if not isinstance(word, int) or not 0 <= word < 1 << 64:
                raise ValueError(f"Descriptor word {index} must be a 64-bit unsigned integer, "
                                 f"not {word!r}")
        values = {}
        for f in FIELDS:
            raw = (words[f.word] >> f.lsb) & ((1 << f.width) - 1)
            if f.signed and raw >> (f.width - 1):
                raw -= 1 << f.width
            values[f.name] = raw + 1 if f.minus_one else raw
        return cls(**values)

    def to_bytes(self):
        """The 12 words as 96 little-endian bytes (the layout in a kmodel and in memory)."""
        return b"".join(word.to_bytes(8, "little") for word in self.to_words())

    @classmethod
    def from_bytes(cls, data):
        """Decode 96 little-endian bytes.

        Raises
        ------
        ValueError
            If ``data`` is not 96 bytes long.
        """
        if len(data) != 8 * len(WORD_NAMES):
            raise ValueError(f"A layer descriptor is {8 * len(WORD_NAMES)} bytes, not "
                             f"{len(data)}")
        return cls.from_words([int.from_bytes(data[i:i + 8], "little")
                               for i in range(0, len(data), 8)])

    def replace(self, **changes):
        """A copy with some fields changed."""
        values = {f.name: getattr(self, f.name) for f in dataclass_fields(self)}
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError(f"Unknown descriptor fields: {', '.join(sorted(unknown))}")
        values.update(changes)
        return type(self)(**values)

    # Derived quantities used by the model, the checks and the gateware tests.

    @property
    def kernel_size(self):
        """1 or 3 (``kernel_type`` must be valid)."""
        return {0: 1, 1: 3}[self.kernel_type]

    @property
    def input_lines(self):
        """KPU RAM lines the input map occupies."""
        return fmap_lines(self.i_ch_num, self.i_col_high, self.i_row_wid)

    @property
    def output_lines(self):
        """KPU RAM lines the output map occupies."""
        return fmap_lines(self.o_ch_num, self.o_col_high, self.o_row_wid)


#: Largest weight load nncase emits, in bytes (its ``size_limit``: 30 KiB).
WEIGHT_LOAD_LIMIT = 30 * 1024


def weight_bytes(in_channels, out_channels, kernel_size, depthwise):
    """Bytes of 8-bit weights of a layer (``out_channels × in_channels × k × k``, or
    ``channels × k × k`` when depthwise)."""
    per_output = kernel_size * kernel_size * (1 if depthwise else in_channels)
    return per_output * out_channels


def _weight_loads(in_channels, out_channels, kernel_size, depthwise):
    """(output channels per load, loads, bytes per load) as nncase's codegen computes them."""
    if depthwise:
        return out_channels, 1, weight_bytes(in_channels, out_channels, kernel_size, True)
    per_channel = kernel_size * kernel_size * in_channels
    per_load = min(out_channels, WEIGHT_LOAD_LIMIT // per_channel)
    loads = (out_channels + per_load - 1) // per_load
    return per_load, loads, per_load * per_channel


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")


def make_layer(*, in_channels, out_channels, width, height, kernel_size, depthwise=False,
               pool_type=PoolType.BYPASS, src_addr=0, dst_addr=0, weights_addr=0, bn_addr=0,
               act_addr=0, arg_x=0, shr_x=0, arg_w=0, shr_w=0, arg_add=0, pad_value=0,
               int_en=1, send_data_out=0):
    """Build a consistent descriptor from a layer's high-level parameters, as nncase does.

    Layout-dependent fields (``row_switch_addr``, ``channel_switch_addr``, ``coef_group``,
    ``wb_*``, ``channel_byte_num``, ``dma_total_byte``) and the weight loads (``o_ch_num_coef``,
    ``load_time``, ``para_size``: at most :data:`WEIGHT_LOAD_LIMIT` bytes a load) are computed;
    ``load_para``, ``load_coor``, ``load_act`` are 1 and ``dma_burst_size`` is 15, like nncase.

    Parameters
    ----------
    in_channels, out_channels : int
        1..1024; equal when ``depthwise``.
    width, height : int
        Input map size: width 1..960 (``row_switch_addr`` holds at most 15 lines a row),
        height 1..512.
    kernel_size : int
        1 or 3.
    pool_type : int
        0..9 (:class:`PoolType`); the output is ``width // stride`` × ``height // stride``.
    src_addr, dst_addr : int
        Line addresses (0..32767) of the input and output maps.
    weights_addr, bn_addr, act_addr : int
        Byte addresses in the weight memory (``para_start_addr``, ``bwsx_base_addr``,
        ``active_addr``).
    arg_x, shr_x, arg_w, shr_w, arg_add, pad_value : int
        Conv-stage arguments and the 3×3 padding byte.

    Raises
    ------
    ValueError
        On a parameter out of range or a combination the KPU cannot encode; the message names it.
    """
    _check_int("in_channels", in_channels, 1, 1024)
    _check_int("out_channels", out_channels, 1, 1024)
    _check_int("width", width, 1, 960)
    _check_int("height", height, 1, 512)
    if kernel_size not in (1, 3):
        raise ValueError(f"kernel_size must be 1 or 3, not {kernel_size!r}")
    if depthwise and in_channels != out_channels:
        raise ValueError(f"A depthwise layer needs as many output as input channels, not "
                         f"{out_channels} and {in_channels}")
    stride = pool_stride(pool_type)
    out_width, out_height = width // stride, height // stride
    if out_width < 1 or out_height < 1:
        raise ValueError(f"Pool type {pool_type} needs an input of at least {stride}×{stride}, "
                         f"not {width}×{height}")
    in_layout, out_layout = row_layout(width), row_layout(out_width)
    if in_layout.row_len * height >= 1 << 15:
        raise ValueError(f"Input map of {width}×{height} needs {in_layout.row_len * height} "
                         f"lines a channel block, more than channel_switch_addr holds")
    if out_width * out_height > 1 << 16:
        raise ValueError(f"Output map of {out_width}×{out_height} has more bytes a channel "
                         f"than channel_byte_num holds")
    per_load, loads, load_bytes = _weight_loads(in_channels, out_channels, kernel_size, depthwise)
    if loads > 64:
        raise ValueError(f"{loads} weight loads needed, more than load_time holds (64)")
    return LayerDescriptor(
        int_en=int_en, depth_wise_layer=int(depthwise),
        image_src_addr=src_addr, image_dst_addr=dst_addr,
        i_ch_num=in_channels, o_ch_num=out_channels, o_ch_num_coef=per_load,
        i_row_wid=width, i_col_high=height, o_row_wid=out_width, o_col_high=out_height,
        kernel_type=int(KernelType.K3X3 if kernel_size == 3 else KernelType.K1X1),
        pool_type=int(pool_type), load_para=1, dma_burst_size=15, pad_value=pad_value,
        bwsx_base_addr=bn_addr,
        load_coor=1, load_time=loads, para_size=load_bytes, para_start_addr=weights_addr,
        channel_switch_addr=in_layout.row_len * height, row_switch_addr=in_layout.row_len,
        coef_group=in_layout.groups, load_act=1, active_addr=act_addr,
        wb_channel_switch_addr=out_layout.row_len * out_height,
        wb_row_switch_addr=out_layout.row_len, wb_group=out_layout.groups,
        shr_w=shr_w, shr_x=shr_x, arg_w=arg_w, arg_x=arg_x, arg_add=arg_add,
        send_data_out=send_data_out, channel_byte_num=out_width * out_height,
        dma_total_byte=out_width * out_height * out_channels,
    )


# Side tables -------------------------------------------------------------------------------------

#: Bytes of one batch-norm entry (one per output channel).
BN_ENTRY_BYTES = 8
#: Bytes of the activation table: 16 segment words and two words of 8 biases.
ACT_TABLE_BYTES = 18 * 8


def _signed(raw, width):
    return raw - (1 << width) if raw >> (width - 1) else raw


def pack_batchnorm(entries):
    """Pack ``(mul, shift, add)`` per output channel into 8-byte little-endian words:
    mul signed 24 bits [23:0], add signed 32 bits [55:24], shift 4 bits [59:56].

    Raises
    ------
    ValueError
        If a value does not fit its field.
    """
    out = bytearray()
    for index, (mul, shift, add) in enumerate(entries):
        _check_int(f"Batch-norm entry {index} mul", mul, -(1 << 23), (1 << 23) - 1)
        _check_int(f"Batch-norm entry {index} shift", shift, 0, 15)
        _check_int(f"Batch-norm entry {index} add", add, -(1 << 31), (1 << 31) - 1)
        word = (mul & 0xFFFFFF) | (add & 0xFFFF_FFFF) << 24 | shift << 56
        out += word.to_bytes(8, "little")
    return bytes(out)


def unpack_batchnorm(data, channels):
    """Inverse of :func:`pack_batchnorm`: a list of ``(mul, shift, add)`` for ``channels``
    entries; the top 4 bits of each word are ignored.

    Raises
    ------
    ValueError
        If ``data`` is shorter than ``channels`` entries.
    """
    if len(data) < channels * BN_ENTRY_BYTES:
        raise ValueError(f"Batch-norm table of {channels} channels needs "
                         f"{channels * BN_ENTRY_BYTES} bytes, not {len(data)}")
    entries = []
    for c in range(channels):
        word = int.from_bytes(data[c * 8:c * 8 + 8], "little")
        entries.append((_signed(word & 0xFFFFFF, 24), (word >> 56) & 0xF,
                        _signed((word >> 24) & 0xFFFF_FFFF, 32)))
    return entries


def pack_activation(segments):
    """Pack 16 ``(x_start, y_mul, shift, bias)`` segments into the 144-byte activation table.

    Each segment word holds shift (8 bits) [7:0], y_mul (signed 16) [23:8], x_start (signed 36)
    [59:24]; words 16 and 17 hold the 16 uint8 biases, segment 0 in the lowest byte.

    Raises
    ------
    ValueError
        If there are not 16 segments or a value does not fit its field.
    """
    segments = list(segments)
    if len(segments) != 16:
        raise ValueError(f"An activation table has 16 segments, not {len(segments)}")
    out = bytearray()
    for index, (x_start, y_mul, shift, bias) in enumerate(segments):
        _check_int(f"Activation segment {index} x_start", x_start, -(1 << 35), (1 << 35) - 1)
        _check_int(f"Activation segment {index} y_mul", y_mul, -(1 << 15), (1 << 15) - 1)
        _check_int(f"Activation segment {index} shift", shift, 0, 255)
        _check_int(f"Activation segment {index} bias", bias, 0, 255)
        word = shift | (y_mul & 0xFFFF) << 8 | (x_start & ((1 << 36) - 1)) << 24
        out += word.to_bytes(8, "little")
    out += bytes(segment[3] for segment in segments)
    return bytes(out)


def unpack_activation(data):
    """Inverse of :func:`pack_activation`: 16 ``(x_start, y_mul, shift, bias)`` tuples.

    Raises
    ------
    ValueError
        If ``data`` is shorter than :data:`ACT_TABLE_BYTES`.
    """
    if len(data) < ACT_TABLE_BYTES:
        raise ValueError(f"An activation table is {ACT_TABLE_BYTES} bytes, not {len(data)}")
    segments = []
    for index in range(16):
        word = int.from_bytes(data[index * 8:index * 8 + 8], "little")
        segments.append((_signed((word >> 24) & ((1 << 36) - 1), 36),
                         _signed((word >> 8) & 0xFFFF, 16), word & 0xFF, data[128 + index]))
    return segments
