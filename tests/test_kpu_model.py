"""The KPU golden model on small hand-computed cases, and its descriptor checks."""

import random

import numpy as np
import pytest

from nangua.hdl.kpu.descriptor import (
    LayerDescriptor, PoolType, Reason, make_layer, pack_activation, pack_batchnorm,
)
from nangua.hdl.kpu.featuremap import read_fmap, write_fmap
from nangua.hdl.kpu.model import (
    KpuLayerError, activate, batchnorm, check, convolve, pool, rounding_shift, run_layer,
    run_layers,
)

NEG = -(1 << 35)


def _identity_act():
    """Activation y = v + 1 for v ≥ 0, 0 below (segment 1 starts at −1, so v = 0 selects it)."""
    return [(NEG, 0, 0, 0), (-1, 1, 0, 0)] + [((1 << 35) - 1, 0, 0, 0)] * 14


def _weight_memory(weights, bn, act):
    memory = bytearray(4096)
    memory[0:len(weights)] = bytes(weights)
    memory[1024:1024 + len(bn)] = bn
    memory[2048:2048 + len(act)] = act
    return memory


def test_one_channel_4x4_identity_conv():
    # w − 128 = 1 and arg_x = −128 make acc = Σ x(w − 128) = x; bn add −1 cancels the +1 of the
    # activation's segment 1.
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4) * 7
    d = make_layer(in_channels=1, out_channels=1, width=4, height=4, kernel_size=1,
                   src_addr=0, dst_addr=5, weights_addr=0, bn_addr=1024, act_addr=2048,
                   arg_x=-128)
    memory = _weight_memory([129], pack_batchnorm([(1, 0, -1)]),
                            pack_activation(_identity_act()))
    ram = bytearray(64 * 16)
    write_fmap(ram, 0, x)
    run_layer(d, ram, memory)
    assert np.array_equal(read_fmap(ram, 5, 1, 4, 4), x)


def test_run_layer_leaves_unused_line_bytes_alone():
    x = np.full((1, 4, 4), 9, dtype=np.uint8)
    d = make_layer(in_channels=1, out_channels=1, width=4, height=4, kernel_size=1,
                   dst_addr=5, bn_addr=1024, act_addr=2048, arg_x=-128)
    memory = _weight_memory([129], pack_batchnorm([(1, 0, -1)]),
                            pack_activation(_identity_act()))
    ram = bytearray(b"\xAA" * (64 * 16))
    write_fmap(ram, 0, x)
    run_layer(d, ram, memory)
    for line in range(5, 9):
        assert ram[line * 64:line * 64 + 4] == b"\x09" * 4
        assert ram[line * 64 + 4:line * 64 + 64] == b"\xAA" * 60


def test_3x3_counts_taps_inside_the_map():
    # Every x = 1, w − 128 = 1, pad 0: acc is the number of taps inside the map.
    x = np.ones((1, 4, 5), dtype=np.uint8)
    w = np.full((1, 1, 3, 3), 129, dtype=np.uint8)
    acc = convolve(x, w, depthwise=False, pad_value=0, arg_x=-128, shr_x=0, arg_w=0, shr_w=0,
                   arg_add=0)
    assert acc[0].tolist() == [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]]


def test_3x3_pad_value_enters_products_and_sums():
    x = np.zeros((1, 3, 3), dtype=np.uint8)
    w = np.full((1, 1, 3, 3), 2, dtype=np.uint8)
    acc = convolve(x, w, depthwise=False, pad_value=10, arg_x=1, shr_x=0, arg_w=0, shr_w=0,
                   arg_add=0)
    # Corner: 5 padded taps, Σ x·w = 5·10·2 = 100, arg_x·Σx = 50.
    assert acc[0, 0, 0] == 150
    assert acc[0, 1, 1] == 0


def test_conv_arguments_by_hand():
    x = np.array([10, 20], dtype=np.uint8).reshape(2, 1, 1)
    w = np.array([3, 5], dtype=np.uint8).reshape(1, 2, 1, 1)
    acc = convolve(x, w, depthwise=False, pad_value=0, arg_x=-7, shr_x=2, arg_w=5, shr_w=1,
                   arg_add=3)
    # 130 + floor(−210 / 4) + floor(40 / 2) + 3·2 (arg_add times the 2 input channels).
    assert acc[0, 0, 0] == 130 - 53 + 20 + 6


def test_depthwise_uses_one_input_channel_per_output_and_group_one():
    x = np.array([2, 3], dtype=np.uint8).reshape(2, 1, 1)
    w = np.array([5, 7], dtype=np.uint8).reshape(2, 1, 1, 1)
    acc = convolve(x, w, depthwise=True, pad_value=0, arg_x=0, shr_x=0, arg_w=0, shr_w=0,
                   arg_add=100)
    assert acc[:, 0, 0].tolist() == [10 + 100, 21 + 100]


def _naive_conv(x, w, depthwise, pad_value, arg_x, shr_x, arg_w, shr_w, arg_add):
    channels, height, width = x.shape
    out_channels, group, k, _ = w.shape
    pad = k // 2
    out = np.zeros((out_channels, height, width), dtype=np.int64)
    for o in range(out_channels):
        inputs = [o] if depthwise else range(channels)
        for y in range(height):
            for xx in range(width):
                value = sum_x = sum_w = 0
                for gi, c in enumerate(inputs):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = y + ky - pad, xx + kx - pad
                            inside = 0 <= iy < height and 0 <= ix < width
                            xv = int(x[c, iy, ix]) if inside else pad_value
                            wv = int(w[o, gi, ky, kx])
                            value += xv * wv
                            sum_x += xv
                            sum_w += wv
                out[o, y, xx] = (value + ((arg_x * sum_x) >> shr_x) + ((arg_w * sum_w) >> shr_w)
                                 + arg_add * len(inputs))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_convolve_matches_naive_loops_seed(seed):
    rng = np.random.default_rng(seed)
    depthwise, k = bool(seed & 1), (1, 3)[(seed >> 1) & 1]
    channels = int(rng.integers(1, 6))
    out_channels = channels if depthwise else int(rng.integers(1, 5))
    x = rng.integers(0, 256, (channels, int(rng.integers(1, 6)), int(rng.integers(1, 7))),
                     dtype=np.uint8)
    w = rng.integers(0, 256, (out_channels, 1 if depthwise else channels, k, k), dtype=np.uint8)
    args = dict(pad_value=int(rng.integers(0, 256)), arg_x=int(rng.integers(-(1 << 23), 1 << 23)),
                shr_x=int(rng.integers(0, 16)), arg_w=int(rng.integers(-(1 << 23), 1 << 23)),
                shr_w=int(rng.integers(0, 16)), arg_add=int(rng.integers(-(1 << 20), 1 << 20)))
    expected = _naive_conv(x, w, depthwise, **args)
    expected = ((expected + (1 << 35)) % (1 << 36)) - (1 << 35)
    assert np.array_equal(convolve(x, w, depthwise=depthwise, **args), expected)


def test_accumulator_wraps_to_36_bits():
    x = np.zeros((1, 1, 1), dtype=np.uint8)
    w = np.zeros((1, 1, 1, 1), dtype=np.uint8)
    acc = convolve(x, w, depthwise=False, pad_value=0, arg_x=0, shr_x=0, arg_w=0, shr_w=0,
                   arg_add=(1 << 35))
    assert acc[0, 0, 0] == -(1 << 35)


def test_batchnorm_by_hand():
    acc = np.array([103, -7], dtype=np.int64).reshape(2, 1, 1)
    v = batchnorm(acc, [(3, 1, -4), (5, 2, 1)])
    # (309 >> 1) − 4 = 150; (−35 >> 2) + 1 = −9 + 1 (arithmetic shift floors).
    assert v[:, 0, 0].tolist() == [150, -8]


@pytest.mark.parametrize("value, shift, expected", [
    (5, 1, 2), (7, 1, 4), (6, 2, 2), (9, 3, 1), (12, 3, 2), (11, 0, 11),
    (-1, 2, -2), (-2, 2, -2), (-3, 1, -2), (-6, 2, -2), (-8, 2, -2),
    (5, 70, 0), (-5, 70, -2), (-5, 54, -2),
])
def test_rounding_shift_follows_nncase(value, shift, expected):
    assert int(rounding_shift(value, shift)) == expected


def test_activation_segment_boundaries():
    # Slope 0: the result is the bias of the selected segment, which is its index + 1.
    starts = [NEG, 0, 10, 20] + [1000 + i for i in range(12)]
    segments = [(start, 0, 0, index + 1) for index, start in enumerate(starts)]
    v = np.array([NEG, NEG + 1, 0, 1, 10, 11, 20, 21, 1011, 1012, (1 << 35) - 1], dtype=np.int64)
    # x_start < v selects: v = x_start stays in the segment below; nothing below NEG → segment 0.
    assert activate(v, segments).tolist() == [1, 1, 1, 2, 2, 3, 3, 4, 15, 16, 16]


def test_activation_slope_shift_bias_and_clamp():
    segments = [(NEG, 0, 0, 0), (-1, 3, 1, 5)] + [((1 << 35) - 1, 0, 0, 0)] * 14
    v = np.array([-5, 0, 1, 2, 200], dtype=np.int64)
    # v = 0: (1·3) >> 1 = 1.5 → 2 (tie, odd integral part) + 5 = 7; v = 1: 6 >> 1 + 5 = 8;
    # v = 2: 4.5 → 4 (tie, even) + 5 = 9; v = 200: clamps to 255.
    assert activate(v, segments).tolist() == [0, 7, 8, 9, 255]


def test_activation_negative_slope_clamps_to_zero():
    segments = [(NEG, -1, 0, 10)] + [((1 << 35) - 1, 0, 0, 0)] * 15
    v = np.array([NEG + 3, NEG + 20], dtype=np.int64)
    assert activate(v, segments).tolist() == [7, 0]


PATTERN = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)


@pytest.mark.parametrize("pool_type, expected", [
    (PoolType.BYPASS, PATTERN[0].tolist()),
    (PoolType.MAX_2_S2, [[5, 7], [13, 15]]),
    (PoolType.MEAN_2_S2, [[2, 4], [10, 12]]),
    (PoolType.MAX_4_S4, [[15]]),
    (PoolType.MEAN_4_S4, [[7]]),
    (PoolType.LEFT_TOP_2_S2, [[0, 2], [8, 10]]),
    (PoolType.RIGHT_TOP_2_S2, [[1, 3], [9, 11]]),
    (PoolType.LEFT_TOP_4_S4, [[0]]),
    (PoolType.MEAN_2_S1, [[2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12, 13], [12, 13, 14, 15]]),
    (PoolType.MAX_2_S1, [[5, 6, 7, 7], [9, 10, 11, 11], [13, 14, 15, 15], [13, 14, 15, 15]]),
])
def test_pool_on_known_pattern(pool_type, expected):
    assert pool(PATTERN, pool_type)[0].tolist() == expected


def test_pool_odd_size_drops_last_row_and_column():
    y = np.arange(35, dtype=np.uint8).reshape(1, 5, 7)
    assert pool(y, PoolType.MAX_2_S2)[0].tolist() == [[8, 10, 12], [22, 24, 26]]
    assert pool(y, PoolType.RIGHT_TOP_2_S2)[0].tolist() == [[1, 3, 5], [15, 17, 19]]


def test_max_2_s1_ignores_outside_mean_2_s1_repeats_edge():
    y = np.array([[[0, 200], [0, 0]]], dtype=np.uint8)
    assert pool(y, PoolType.MAX_2_S1)[0].tolist() == [[200, 200], [0, 0]]
    assert pool(y, PoolType.MEAN_2_S1)[0].tolist() == [[50, 100], [0, 0]]


def test_stride_2_conv_is_stride_1_then_pick():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (3, 8, 6), dtype=np.uint8)
    weights = rng.integers(0, 256, 4 * 3 * 9, dtype=np.uint8)
    memory = _weight_memory(weights, pack_batchnorm([(1, 4, 0)] * 4),
                            pack_activation(_identity_act()))
    full = make_layer(in_channels=3, out_channels=4, width=6, height=8, kernel_size=3,
                      dst_addr=20, bn_addr=1024, act_addr=2048, arg_x=-128)
    strided = make_layer(in_channels=3, out_channels=4, width=6, height=8, kernel_size=3,
                         pool_type=PoolType.RIGHT_TOP_2_S2, dst_addr=40, bn_addr=1024,
                         act_addr=2048, arg_x=-128)
    ram = bytearray(64 * 64)
    write_fmap(ram, 0, x)
    run_layers([full, strided.to_words()], ram, memory)
    assert np.array_equal(read_fmap(ram, 40, 4, 4, 3), read_fmap(ram, 20, 4, 8, 6)[:, ::2, 1::2])


# check() and errors -----------------------------------------------------------------------------

BASE = make_layer(in_channels=8, out_channels=8, width=16, height=16, kernel_size=3,
                  src_addr=0, dst_addr=100, weights_addr=0, bn_addr=1024, act_addr=2048)


@pytest.mark.parametrize("changes, reason", [
    (dict(), Reason.OK),
    (dict(kernel_type=2), Reason.KERNEL_TYPE),
    (dict(pool_type=10), Reason.POOL_TYPE),
    (dict(first_stride=1), Reason.UNSUPPORTED_MODE),
    (dict(bypass_conv=1), Reason.UNSUPPORTED_MODE),
    (dict(coef_row_offset=3), Reason.UNSUPPORTED_MODE),
    (dict(load_para=0), Reason.UNSUPPORTED_MODE),
    (dict(depth_wise_layer=1, o_ch_num=4, o_ch_num_coef=4, dma_total_byte=1024),
     Reason.CHANNELS),
    (dict(o_row_wid=8), Reason.OUTPUT_SIZE),
    (dict(pool_type=1), Reason.OUTPUT_SIZE),
    (dict(coef_group=2), Reason.LAYOUT),
    (dict(wb_channel_switch_addr=17), Reason.LAYOUT),
    (dict(dma_total_byte=5), Reason.LAYOUT),
    (dict(para_size=100), Reason.WEIGHT_LOADS),
    (dict(o_ch_num_coef=3), Reason.WEIGHT_LOADS),
    (dict(image_src_addr=32767), Reason.SRC_RANGE),
    (dict(image_dst_addr=32760), Reason.DST_RANGE),
    (dict(image_dst_addr=31), Reason.OVERLAP),
    (dict(image_dst_addr=32), Reason.OK),
    (dict(image_src_addr=131, image_dst_addr=100), Reason.OVERLAP),
    (dict(image_src_addr=132, image_dst_addr=100), Reason.OK),
    (dict(para_start_addr=4000), Reason.WEIGHT_RANGE),
    (dict(bwsx_base_addr=4090), Reason.WEIGHT_RANGE),
    (dict(active_addr=4096 - 144), Reason.OK),
    (dict(active_addr=4096 - 136), Reason.WEIGHT_RANGE),
    (dict(active_addr=2052), Reason.WEIGHT_RANGE),
    # The first failing check wins, in reason-code order.
    (dict(kernel_type=3, pool_type=12, image_src_addr=32767), Reason.KERNEL_TYPE),
])
def test_check_reason(changes, reason):
    assert check(BASE.replace(**changes), weight_size=4096) == reason


def test_check_without_weight_size_skips_weight_range():
    assert check(BASE.replace(para_start_addr=1 << 31)) == Reason.OK


def test_check_uses_ram_size():
    assert check(BASE, ram_size=64 * 200) == Reason.OK
    assert check(BASE, ram_size=64 * 130) == Reason.DST_RANGE


def test_run_layer_error_leaves_ram_unchanged():
    ram = bytearray(random.Random(1).randbytes(64 * 256))
    before = bytes(ram)
    with pytest.raises(KpuLayerError, match=r"^Layer cannot run: OVERLAP \(10\)$") as info:
        run_layer(BASE.replace(image_dst_addr=10), ram, bytearray(4096))
    assert info.value.reason == Reason.OVERLAP
    assert bytes(ram) == before


@pytest.mark.parametrize("seed", range(4))
def test_check_returns_a_reason_for_any_words_seed(seed):
    rng = random.Random(seed)
    seen = set()
    for _ in range(500):
        words = [rng.getrandbits(64) for _ in range(12)]
        seen.add(check(LayerDescriptor.from_words(words), weight_size=1 << 20))
    assert Reason.KERNEL_TYPE in seen and Reason.OK not in seen


@pytest.mark.parametrize("seed", range(8))
def test_make_layer_random_layers_pass_check_and_run_seed(seed):
    rng = random.Random(seed)
    depthwise = rng.random() < 0.3
    in_channels = rng.randrange(1, 40)
    out_channels = in_channels if depthwise else rng.randrange(1, 40)
    pool_type = rng.choice(list(PoolType))
    stride = {0: 1, 8: 1, 9: 1, 3: 4, 4: 4, 7: 4}.get(pool_type, 2)
    width, height = rng.randrange(stride, 70), rng.randrange(stride, 20)
    k = rng.choice((1, 3))
    src = rng.randrange(0, 100)
    d = make_layer(in_channels=in_channels, out_channels=out_channels, width=width,
                   height=height, kernel_size=k, depthwise=depthwise, pool_type=pool_type,
                   src_addr=src, dst_addr=src + 3 * 40 * 20, weights_addr=8,
                   bn_addr=65536, act_addr=65536 + 8 * 64, arg_x=-128,
                   arg_w=-rng.randrange(256), arg_add=rng.randrange(1 << 16),
                   pad_value=rng.randrange(256))
    assert check(d, weight_size=1 << 17) == Reason.OK
    weights = bytearray(rng.randbytes(1 << 17))
    weights[65536:65536 + 8 * 64] = pack_batchnorm(
        [(rng.randrange(1, 1 << 12), rng.randrange(16), rng.randrange(-1000, 1000))] * 64)
    weights[65536 + 8 * 64:65536 + 8 * 64 + 144] = pack_activation(
        [(NEG, 0, 0, 0)] + [(-(1 << 20) + (i << 16), rng.randrange(1, 100), 12, i * 10)
                            for i in range(15)])
    ram = bytearray(rng.randbytes(1 << 18))
    before = np.frombuffer(bytes(ram), dtype=np.uint8)
    run_layer(d, ram, weights)
    after = np.frombuffer(bytes(ram), dtype=np.uint8)
    changed = np.flatnonzero(before != after)
    if len(changed):
        first, last = changed[0] // 64, changed[-1] // 64
        assert d.image_dst_addr <= first and last < d.image_dst_addr + d.output_lines
