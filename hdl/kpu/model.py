"""Golden model of the K210-style KPU: executes layer descriptors on a KPU RAM image.

Pure Python + NumPy, no Amaranth. Checked byte for byte against nncase 1.9's K210 simulator
(``tests/test_kpu_nncase.py``); the gateware is checked against this model. ``docs/kpu.md``
lists every decision taken where the public facts are silent.

Memories
--------
KPU RAM
    A bytearray (or 1-D uint8 array) of 64-byte lines, :data:`KPU_RAM_BYTES` by default; maps
    are laid out as in :mod:`.featuremap`.
Weight memory
    A second bytearray, addressed by byte. A layer reads there:

    - weights at ``para_start_addr``: uint8, output channel major, then input channel, then the
      kernel rows top to bottom, then columns left to right (``OIHW``, nncase's order); a
      depthwise layer has one input channel per output channel (``O×1×k×k``). The weights of
      all loads are contiguous: ``o_ch_num × i_ch_num × k²`` bytes (``o_ch_num × k²`` when
      depthwise). ``load_time``/``para_size``/``o_ch_num_coef`` only split that range into loads.
    - batch-norm entries at ``bwsx_base_addr``: 8 bytes per output channel
      (:func:`.descriptor.pack_batchnorm`);
    - the activation table at ``active_addr``: 144 bytes (:func:`.descriptor.pack_activation`).

Arithmetic (per output channel ``o`` and pixel ``p``; ``G`` = input channels per group:
``i_ch_num``, or 1 when depthwise; ``k`` = 1 or 3)
    1. ``acc = Σ x·w + ((arg_x·Σx) >> shr_x) + ((arg_w·Σw) >> shr_w) + arg_add·G`` over the
       ``G·k²`` taps, ``x`` read with ``pad_value`` outside the map (3×3 pads by one on every
       side, output the size of the input); then wrapped to signed 36 bits.
    2. ``v = ((acc·mul) >> shift) + add`` with the channel's batch-norm entry; wrapped to
       signed 36 bits.
    3. Activation: segment ``s`` = the last of the 16 with ``x_start < v`` (segment 0 if none);
       ``y = clamp(round((v − x_start)·y_mul, shift) + bias, 0, 255)`` with nncase's
       "banker" rounding shift (:func:`rounding_shift`).
    4. Pooling of the W×H result (:func:`pool`), giving ``o_row_wid × o_col_high``.

All shifts are arithmetic (floor). ``>>`` by the 4-bit shifts never exceeds 15.
"""

import numpy as np

from .descriptor import (
    ACT_TABLE_BYTES, BN_ENTRY_BYTES, LayerDescriptor, PoolType, Reason, pool_stride,
    unpack_activation, unpack_batchnorm,
)
from .featuremap import LINE_BYTES, read_fmap, row_layout, write_fmap

__all__ = ["KPU_RAM_BYTES", "KpuLayerError", "check", "run_layer", "run_layers", "convolve",
           "batchnorm", "activate", "rounding_shift", "pool", "wrap_signed", "layer_weight_bytes"]

#: Default KPU RAM size: 2 MiB, every line a 15-bit address reaches.
KPU_RAM_BYTES = 2 * 1024 * 1024

#: Width of the convolution and batch-norm results (nncase's ``KPU_BN_OUT_BITS``).
ACC_BITS = 36

# Largest activation shift that changes a result: |(v − x_start)·y_mul| < 2**53, so every
# shift ≥ 54 gives the same value as 62 (0 for non-negative, −2 for negative products).
_MAX_EFFECTIVE_SHIFT = 62


class KpuLayerError(ValueError):
    """A descriptor that cannot run; ``reason`` is its :class:`.descriptor.Reason`."""

    def __init__(self, reason):
        self.reason = Reason(reason)
        super().__init__(f"Layer cannot run: {self.reason.name} ({int(self.reason)})")


def layer_weight_bytes(d):
    """Bytes of weights the layer reads from ``para_start_addr``."""
    per_output = d.kernel_size ** 2 * (1 if d.depth_wise_layer else d.i_ch_num)
    return per_output * d.o_ch_num


def _layout_ok(d):
    in_layout, out_layout = row_layout(d.i_row_wid), row_layout(d.o_row_wid)
    return (in_layout.row_len < 16 and out_layout.row_len < 16
            and d.row_switch_addr == in_layout.row_len
            and d.channel_switch_addr == in_layout.row_len * d.i_col_high
            and d.coef_group == in_layout.groups
            and d.wb_row_switch_addr == out_layout.row_len
            and d.wb_channel_switch_addr == out_layout.row_len * d.o_col_high
            and d.wb_group == out_layout.groups
            and d.channel_byte_num == d.o_row_wid * d.o_col_high
            and d.dma_total_byte == d.o_row_wid * d.o_col_high * d.o_ch_num)


def _weight_loads_ok(d):
    per_output = d.kernel_size ** 2 * (1 if d.depth_wise_layer else d.i_ch_num)
    per_load = d.o_ch_num_coef
    return (per_load <= d.o_ch_num
            and d.load_time == (d.o_ch_num + per_load - 1) // per_load
            and d.para_size == per_load * per_output)


def check(d, ram_size=KPU_RAM_BYTES, weight_size=None):
    """Return the :class:`.descriptor.Reason` why ``d`` cannot run, or ``Reason.OK``.

    The checks run in the order of the reason codes and the first failure is returned, so the
    gateware reports the same code for a descriptor with several faults.

    Parameters
    ----------
    d : LayerDescriptor
    ram_size : int
        KPU RAM bytes (a multiple of 64).
    weight_size : int or None
        Weight-memory bytes; ``None`` skips :attr:`Reason.WEIGHT_RANGE`.

    Notes
    -----
    - ``UNSUPPORTED_MODE``: ``first_stride``, ``bypass_conv``, ``pad_type``, ``ram_flag``,
      ``full_add``, ``coef_column_offset``, ``coef_row_offset`` or ``coef_size`` non-zero, or
      ``load_para``, ``load_coor`` or ``load_act`` zero (nncase never emits either).
      ``int_en``, ``dma_burst_size`` and ``send_data_out`` are accepted and do not change the
      result (there is no main-memory output DMA).
    - ``OVERLAP``: the input lines ``[src, src + input_lines)`` and output lines
      ``[dst, dst + output_lines)`` share any line. A streaming engine writes output channels
      while later input channels are still unread, so any overlap can corrupt.
    - ``WEIGHT_RANGE`` also covers a batch-norm or activation table not 8-byte aligned.
    """
    if d.kernel_type not in (0, 1):
        return Reason.KERNEL_TYPE
    if d.pool_type > 9:
        return Reason.POOL_TYPE
    if (d.first_stride or d.bypass_conv or d.pad_type or d.ram_flag or d.full_add
            or d.coef_column_offset or d.coef_row_offset or d.coef_size
            or not (d.load_para and d.load_coor and d.load_act)):
        return Reason.UNSUPPORTED_MODE
    if d.depth_wise_layer and d.i_ch_num != d.o_ch_num:
        return Reason.CHANNELS
    stride = pool_stride(d.pool_type)
    if d.o_row_wid != d.i_row_wid // stride or d.o_col_high != d.i_col_high // stride:
        return Reason.OUTPUT_SIZE
    if not _layout_ok(d):
        return Reason.LAYOUT
    if not _weight_loads_ok(d):
        return Reason.WEIGHT_LOADS
    lines = ram_size // LINE_BYTES
    if d.image_src_addr + d.input_lines > lines:
        return Reason.SRC_RANGE
    if d.image_dst_addr + d.output_lines > lines:
        return Reason.DST_RANGE
    if (d.image_src_addr < d.image_dst_addr + d.output_lines
            and d.image_dst_addr < d.image_src_addr + d.input_lines):
        return Reason.OVERLAP
    if weight_size is not None:
        if (d.para_start_addr + layer_weight_bytes(d) > weight_size
                or d.bwsx_base_addr + BN_ENTRY_BYTES * d.o_ch_num > weight_size
                or d.active_addr + ACT_TABLE_BYTES > weight_size
                or d.bwsx_base_addr % 8 or d.active_addr % 8):
            return Reason.WEIGHT_RANGE
    return Reason.OK


def wrap_signed(values, bits):
    """Two's-complement wrap of int64 ``values`` to ``bits`` bits."""
    values = np.asarray(values, dtype=np.int64)
    return ((values + (1 << (bits - 1))) & ((1 << bits) - 1)) - (1 << (bits - 1))


def convolve(x, w, *, depthwise, pad_value, arg_x, shr_x, arg_w, shr_w, arg_add):
    """Conv stage: int64 accumulators (O×H×W), wrapped to 36 bits.

    Parameters
    ----------
    x : ndarray, uint8, C×H×W
    w : ndarray, uint8, O×G×k×k (``G`` = C, or 1 when depthwise with O = C)
    """
    channels, height, width = x.shape
    out_channels, group, k, _ = w.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    wf = w.astype(np.float64)
    # Accumulate tap by tap in float64, exact here: every partial sum is below
    # 1024·9·255·255 < 2**53.
    products = np.zeros((out_channels, height * width), dtype=np.float64)
    sum_x = np.zeros((channels, height * width), dtype=np.float64)
    for ky in range(k):
        for kx in range(k):
            shifted = xp[:, ky:ky + height, kx:kx + width].reshape(channels, -1)
            shifted = shifted.astype(np.float64)
            sum_x += shifted
            if depthwise:
                products += wf[:, 0, ky, kx][:, None] * shifted
            else:
                products += wf[:, :, ky, kx] @ shifted
    if not depthwise:
        sum_x = sum_x.sum(axis=0, keepdims=True)
    products = np.rint(products).astype(np.int64).reshape(out_channels, height, width)
    sum_x = np.rint(sum_x).astype(np.int64).reshape(-1, height, width)
    sum_w = w.reshape(out_channels, -1).astype(np.int64).sum(axis=1)[:, None, None]
    acc = (products + ((np.int64(arg_x) * sum_x) >> shr_x)
           + ((np.int64(arg_w) * sum_w) >> shr_w) + np.int64(arg_add) * group)
    return wrap_signed(acc, ACC_BITS)


def batchnorm(acc, entries):
    """Batch-norm stage: ``((acc·mul) >> shift) + add`` per output channel, wrapped to 36 bits.

    ``entries`` is a list of ``(mul, shift, add)``, one per channel (first axis of ``acc``).
    """
    mul, shift, add = (np.array(column, dtype=np.int64)[:, None, None]
                       for column in zip(*entries))
    return wrap_signed(((acc * mul) >> shift) + add, ACC_BITS)


def rounding_shift(values, shift):
    """nncase's ``carry_shift<int64_t, true>``: ``values >> shift`` rounded as nncase does.

    With ``q = values >> shift`` (floor) and ``f`` the ``shift`` low bits: ``f`` below half
    gives ``q``; above half gives ``q + sign(values)``; exactly half gives ``q`` if ``q`` is
    even, else ``q + sign(values)``. ``sign`` is −1 for negative values, so negative inputs
    round *away* by one more than true rounding would (e.g. −1 >> 2 gives −2): that is the
    vendor's arithmetic, kept as is. Shift 0 returns the values unchanged.
    """
    values = np.asarray(values, dtype=np.int64)
    shift = np.minimum(np.asarray(shift, dtype=np.int64), _MAX_EFFECTIVE_SHIFT)
    shift, values = np.broadcast_arrays(shift, values)
    safe = np.maximum(shift, 1)
    integral = values >> safe
    fraction = values & ((np.int64(1) << safe) - 1)
    half = np.int64(1) << (safe - 1)
    sign = np.where(values < 0, -1, 1)
    up = (fraction > half) | ((fraction == half) & ((integral & 1) == 1))
    rounded = integral + np.where(up, sign, 0)
    return np.where(shift > 0, rounded, values)


def activate(v, segments):
    """Activation stage: uint8 result of the 16-segment piecewise-linear table.

    ``segments`` is a list of 16 ``(x_start, y_mul, shift, bias)``.
    """
    x_start, y_mul, shift, bias = (np.array(column, dtype=np.int64) for column in zip(*segments))
    # Index of the last segment with x_start < v; 0 when none is (nncase reads past its table).
    above = v[..., None] > x_start
    index = np.where(above.any(axis=-1), 15 - np.argmax(above[..., ::-1], axis=-1), 0)
    y = rounding_shift((v - x_start[index]) * y_mul[index], shift[index]) + bias[index]
    return np.clip(y, 0, 255).astype(np.uint8)


def pool(y, pool_type):
    """Pooling stage on a C×H×W uint8 map (nncase's ``kpu_pool2d``).

    Strided pools take the windows that fit (output ``H // s × W // s``; odd rows and columns
    at the end are dropped). Means truncate (sum // count). The stride-1 2×2 pools reach one
    pixel right and below: ``MAX_2_S1`` ignores pixels outside the map, ``MEAN_2_S1`` repeats
    the last row and column.
    """
    pool_type = PoolType(pool_type)
    _, height, width = y.shape
    stride = pool_stride(pool_type)
    oh, ow = height // stride, width // stride
    if pool_type == PoolType.BYPASS:
        return y.copy()
    if pool_type in (PoolType.LEFT_TOP_2_S2, PoolType.LEFT_TOP_4_S4):
        return y[:, 0:oh * stride:stride, 0:ow * stride:stride].copy()
    if pool_type == PoolType.RIGHT_TOP_2_S2:
        return y[:, 0:oh * stride:stride, 1:ow * stride:stride].copy()
    if pool_type in (PoolType.MAX_2_S1, PoolType.MEAN_2_S1):
        edge = "constant" if pool_type == PoolType.MAX_2_S1 else "edge"
        padded = np.pad(y.astype(np.int64), ((0, 0), (0, 1), (0, 1)), mode=edge)
        windows = np.stack([padded[:, dy:dy + height, dx:dx + width]
                            for dy in range(2) for dx in range(2)])
    else:
        blocks = y[:, :oh * stride, :ow * stride].astype(np.int64)
        blocks = blocks.reshape(-1, oh, stride, ow, stride)
        windows = blocks.transpose(2, 4, 0, 1, 3).reshape(stride * stride, -1, oh, ow)
    if pool_type in (PoolType.MAX_2_S1, PoolType.MAX_2_S2, PoolType.MAX_4_S4):
        return windows.max(axis=0).astype(np.uint8)
    return (windows.sum(axis=0) // len(windows)).astype(np.uint8)


def _as_bytes(memory):
    if isinstance(memory, np.ndarray):
        return memory.tobytes()
    return bytes(memory)


def run_layer(d, ram, weights):
    """Execute one layer: read the input map from ``ram``, write the output map into it.

    Parameters
    ----------
    d : LayerDescriptor
    ram : bytearray or 1-D uint8 ndarray
        KPU RAM image, modified in place: only the bytes of the output map change.
    weights : bytes-like
        Weight memory (weights, batch-norm and activation tables).

    Raises
    ------
    KpuLayerError
        If :func:`check` does not return ``Reason.OK``; ``ram`` is then unchanged.
    """
    reason = check(d, ram_size=len(ram), weight_size=len(weights))
    if reason != Reason.OK:
        raise KpuLayerError(reason)
    memory = _as_bytes(weights)
    k = d.kernel_size
    group = 1 if d.depth_wise_layer else d.i_ch_num
    count = layer_weight_bytes(d)
    w = np.frombuffer(memory, dtype=np.uint8, count=count, offset=d.para_start_addr)
    w = w.reshape(d.o_ch_num, group, k, k)
    bn = unpack_batchnorm(memory[d.bwsx_base_addr:d.bwsx_base_addr + BN_ENTRY_BYTES * d.o_ch_num],
                          d.o_ch_num)
    act = unpack_activation(memory[d.active_addr:d.active_addr + ACT_TABLE_BYTES])
    x = read_fmap(ram, d.image_src_addr, d.i_ch_num, d.i_col_high, d.i_row_wid)
    acc = convolve(x, w, depthwise=bool(d.depth_wise_layer), pad_value=d.pad_value,
                   arg_x=d.arg_x, shr_x=d.shr_x, arg_w=d.arg_w, shr_w=d.shr_w,
                   arg_add=d.arg_add)
    y = activate(batchnorm(acc, bn), act)
    write_fmap(ram, d.image_dst_addr, pool(y, d.pool_type))


def run_layers(descriptors, ram, weights):
    """Execute layers in order (as queued in the descriptor FIFO); stops at the first error."""
    for d in descriptors:
        if not isinstance(d, LayerDescriptor):
            d = LayerDescriptor.from_words(d)
        run_layer(d, ram, weights)
