"""Descriptor encoding, side-table packing and feature-map layout of the KPU."""

import random

import numpy as np
import pytest

from nangua.hdl.kpu.descriptor import (
    FIELDS, WORD_NAMES, LayerDescriptor, PoolType, Reason, make_layer, pack_activation,
    pack_batchnorm, pool_stride, unpack_activation, unpack_batchnorm,
)
from nangua.hdl.kpu.featuremap import fmap_lines, read_fmap, row_layout, write_fmap


def _random_descriptor(rng):
    values = {}
    for f in FIELDS:
        if f.signed:
            values[f.name] = rng.randrange(-(1 << (f.width - 1)), 1 << (f.width - 1))
        elif f.minus_one:
            values[f.name] = rng.randrange(1, (1 << f.width) + 1)
        else:
            values[f.name] = rng.randrange(0, 1 << f.width)
    return LayerDescriptor(**values)


def test_fields_do_not_overlap_and_fit_64_bits():
    used = {}
    for f in FIELDS:
        assert 0 <= f.word < len(WORD_NAMES)
        assert f.lsb + f.width <= 64
        for bit in range(f.lsb, f.lsb + f.width):
            assert (f.word, bit) not in used, (f.name, used.get((f.word, bit)))
            used[(f.word, bit)] = f.name


def test_every_descriptor_attribute_has_a_field():
    names = [f.name for f in FIELDS]
    assert len(names) == len(set(names))
    assert set(names) == set(LayerDescriptor.__dataclass_fields__)


@pytest.mark.parametrize("seed", range(20))
def test_random_round_trip_seed(seed):
    rng = random.Random(seed)
    descriptor = _random_descriptor(rng)
    words = descriptor.to_words()
    assert all(0 <= w < 1 << 64 for w in words)
    assert LayerDescriptor.from_words(words) == descriptor
    assert LayerDescriptor.from_bytes(descriptor.to_bytes()) == descriptor


def test_minus_one_encoding_matches_k210_positions():
    descriptor = LayerDescriptor(i_ch_num=3, o_ch_num=1024, o_ch_num_coef=2, i_row_wid=320,
                                 i_col_high=240, o_row_wid=1, o_col_high=512, load_time=64,
                                 channel_byte_num=65536, dma_total_byte=1 << 32)
    words = descriptor.to_words()
    assert words[2] == 2 | 1023 << 32 | 1 << 48
    assert words[3] == 319 | 239 << 10 | 0 << 32 | 511 << 42
    assert words[5] == 63 << 1
    assert words[11] == 0xFFFF << 16 | 0xFFFF_FFFF << 32


def test_signed_fields_are_twos_complement():
    descriptor = LayerDescriptor(arg_x=-128, arg_w=-1, arg_add=-(1 << 39), shr_x=15)
    words = descriptor.to_words()
    assert words[9] == 15 << 4 | 0xFFFFFF << 8 | 0xFFFF80 << 32
    assert words[10] == 1 << 39
    assert LayerDescriptor.from_words(words).arg_add == -(1 << 39)


def test_reserved_bits_are_ignored_on_read():
    words = [0xFFFF_FFFF_FFFF_FFFF] * 12
    descriptor = LayerDescriptor.from_words(words)
    again = descriptor.to_words()
    assert again[0] == 0xF
    assert again[6] == 0xFFFF


@pytest.mark.parametrize("field, value, message", [
    ("i_ch_num", 0, "i_ch_num must be an integer in 1..1024, not 0"),
    ("i_ch_num", 1025, "i_ch_num must be an integer in 1..1024, not 1025"),
    ("arg_x", 1 << 23, "arg_x must be an integer in -8388608..8388607, not 8388608"),
    ("image_src_addr", 1 << 15, "image_src_addr must be an integer in 0..32767, not 32768"),
    ("int_en", True, "int_en must be an integer in 0..1, not True"),
])
def test_to_words_rejects_out_of_range(field, value, message):
    with pytest.raises(ValueError) as info:
        LayerDescriptor(**{field: value}).to_words()
    assert str(info.value) == message


def test_from_words_rejects_wrong_length():
    with pytest.raises(ValueError, match=r"^A layer descriptor has 12 words, not 11$"):
        LayerDescriptor.from_words([0] * 11)


def test_from_words_rejects_wide_word():
    with pytest.raises(ValueError,
                       match=r"^Descriptor word 3 must be a 64-bit unsigned integer, not -1$"):
        LayerDescriptor.from_words([0, 0, 0, -1] + [0] * 8)


def test_from_bytes_rejects_wrong_length():
    with pytest.raises(ValueError, match=r"^A layer descriptor is 96 bytes, not 95$"):
        LayerDescriptor.from_bytes(bytes(95))


def test_replace_rejects_unknown_field():
    with pytest.raises(ValueError, match=r"^Unknown descriptor fields: nope$"):
        LayerDescriptor().replace(nope=1)


def test_make_layer_fields_like_nncase():
    layer = make_layer(in_channels=16, out_channels=32, width=100, height=20, kernel_size=3,
                       pool_type=PoolType.MAX_2_S2, src_addr=10, dst_addr=2000, arg_x=-128)
    assert (layer.o_row_wid, layer.o_col_high) == (50, 10)
    assert (layer.row_switch_addr, layer.channel_switch_addr, layer.coef_group) == (2, 40, 1)
    assert (layer.wb_row_switch_addr, layer.wb_channel_switch_addr, layer.wb_group) == (1, 10, 1)
    assert (layer.channel_byte_num, layer.dma_total_byte) == (500, 16000)
    assert (layer.o_ch_num_coef, layer.load_time, layer.para_size) == (32, 1, 32 * 144)
    assert (layer.load_para, layer.load_coor, layer.load_act, layer.dma_burst_size) == (1, 1, 1, 15)
    assert layer.kernel_type == 1 and layer.depth_wise_layer == 0


def test_make_layer_splits_weight_loads_at_30_kib():
    layer = make_layer(in_channels=1024, out_channels=64, width=4, height=4, kernel_size=3)
    assert (layer.o_ch_num_coef, layer.load_time, layer.para_size) == (3, 22, 3 * 9 * 1024)
    layer = make_layer(in_channels=1024, out_channels=1024, width=4, height=4, kernel_size=1)
    assert (layer.o_ch_num_coef, layer.load_time, layer.para_size) == (30, 35, 30 * 1024)


def test_make_layer_depthwise_is_one_load():
    layer = make_layer(in_channels=1024, out_channels=1024, width=8, height=8, kernel_size=3,
                       depthwise=True)
    assert (layer.o_ch_num_coef, layer.load_time, layer.para_size) == (1024, 1, 9 * 1024)
    assert layer.depth_wise_layer == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=2), "kernel_size must be 1 or 3, not 2"),
    (dict(in_channels=0), "in_channels must be an integer in 1..1024, not 0"),
    (dict(width=961), "width must be an integer in 1..960, not 961"),
    (dict(height=513), "height must be an integer in 1..512, not 513"),
    (dict(depthwise=True, out_channels=5),
     "A depthwise layer needs as many output as input channels, not 5 and 4"),
    (dict(pool_type=10), "Pool type must be 0..9, not 10"),
    (dict(width=3, pool_type=PoolType.MAX_4_S4),
     "Pool type 3 needs an input of at least 4×4, not 3×8"),
    (dict(in_channels=1024, out_channels=1024, kernel_size=3),
     "342 weight loads needed, more than load_time holds (64)"),
    (dict(width=512, height=512), "Output map of 512×512 has more bytes a channel than "
                                  "channel_byte_num holds"),
])
def test_make_layer_rejects(kwargs, message):
    params = dict(in_channels=4, out_channels=4, width=8, height=8, kernel_size=1)
    params.update(kwargs)
    with pytest.raises(ValueError) as info:
        make_layer(**params)
    assert str(info.value) == message


def test_pool_strides():
    assert [pool_stride(p) for p in PoolType] == [1, 2, 2, 4, 4, 2, 2, 4, 1, 1]


def test_reason_codes_are_stable():
    assert [int(r) for r in Reason] == list(range(12))
    assert Reason.OK == 0


def test_batchnorm_packing_bit_positions():
    data = pack_batchnorm([(-1, 15, -2), (0x7FFFFF, 0, 0x7FFF_FFFF)])
    assert int.from_bytes(data[:8], "little") == 0xFFFFFF | 0xFFFF_FFFE << 24 | 15 << 56
    assert int.from_bytes(data[8:], "little") == 0x7FFFFF | 0x7FFF_FFFF << 24
    assert unpack_batchnorm(data, 2) == [(-1, 15, -2), (0x7FFFFF, 0, 0x7FFF_FFFF)]


def test_batchnorm_packing_rejects_wide_shift():
    with pytest.raises(ValueError, match=r"^Batch-norm entry 0 shift must be an integer in "
                                         r"0\.\.15, not 16$"):
        pack_batchnorm([(1, 16, 0)])


def test_activation_packing_bit_positions():
    segments = [(-(1 << 35) + i, -i, i, 200 + i) for i in range(16)]
    data = pack_activation(segments)
    assert len(data) == 144
    word1 = int.from_bytes(data[8:16], "little")
    assert word1 == 1 | 0xFFFF << 8 | ((-(1 << 35) + 1) & ((1 << 36) - 1)) << 24
    assert data[128:] == bytes(range(200, 216))
    assert unpack_activation(data) == segments


def test_activation_packing_needs_16_segments():
    with pytest.raises(ValueError, match=r"^An activation table has 16 segments, not 15$"):
        pack_activation([(0, 0, 0, 0)] * 15)


@pytest.mark.parametrize("width, expected", [
    (1, (4, 1, 16)), (16, (4, 1, 16)), (17, (2, 1, 32)), (32, (2, 1, 32)), (33, (1, 1, 64)),
    (64, (1, 1, 64)), (65, (1, 2, 64)), (320, (1, 5, 64)),
])
def test_row_layout(width, expected):
    layout = row_layout(width)
    assert (layout.groups, layout.row_len, layout.pitch) == expected


def test_fmap_lines():
    assert fmap_lines(3, 8, 8) == 8
    assert fmap_lines(5, 8, 8) == 16
    assert fmap_lines(3, 10, 20) == 20
    assert fmap_lines(2, 10, 100) == 40


def test_write_fmap_places_bytes_by_hand():
    ram = bytearray(64 * 32)
    tensor = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3) + 1
    write_fmap(ram, 3, tensor)
    # Channels 0..3 share lines 3 and 4 at 16-byte pitch; channel 4 starts at line 5.
    assert ram[3 * 64 + 0:3 * 64 + 3] == bytes([1, 2, 3])
    assert ram[4 * 64 + 16:4 * 64 + 19] == bytes(tensor[1, 1])
    assert ram[5 * 64 + 0:5 * 64 + 3] == bytes(tensor[4, 0])
    assert ram[3 * 64 + 3] == 0  # beyond the width inside the pitch: untouched
    assert sum(ram) == int(tensor.astype(int).sum())


@pytest.mark.parametrize("shape", [(3, 5, 7), (4, 6, 17), (2, 3, 64), (3, 4, 130)])
def test_fmap_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    ram = np.zeros(64 * 64, dtype=np.uint8)
    tensor = rng.integers(0, 256, size=shape, dtype=np.uint8)
    write_fmap(ram, 2, tensor)
    assert np.array_equal(read_fmap(ram, 2, *shape), tensor)


def test_fmap_beyond_ram_rejected():
    with pytest.raises(ValueError, match=r"^Feature map 1×2×3 at line 1 ends at byte 192, "
                                         r"beyond the 128-byte RAM$"):
        write_fmap(bytearray(128), 1, np.zeros((1, 2, 3), np.uint8))


def test_write_fmap_rejects_wrong_dtype():
    with pytest.raises(ValueError, match=r"^Feature map must be a C×H×W uint8 array, not int64 "
                                         r"with shape \(2, 2\)$"):
        write_fmap(bytearray(128), 0, np.zeros((2, 2), np.int64))
