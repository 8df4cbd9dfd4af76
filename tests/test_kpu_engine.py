"""The KPU gateware against the golden model: random layers, queues, errors, registers."""

import random

import numpy as np
import pytest
from amaranth.back import verilog

from nangua.hdl.kpu import model
from nangua.hdl.kpu.check import CHECK_LATENCY
from nangua.hdl.kpu.descriptor import Reason, make_layer
from nangua.hdl.kpu.featuremap import LINE_BYTES, fmap_byte_offsets
from nangua.hdl.kpu.kpu import INT_DONE, INT_ERROR, Kpu
from nangua.hdl.kpu.layouts import GatewareReason
from nangua.sim.kpu import random_layer, run_kpu

RAM_BYTES = 8192
WEIGHT_BYTES = 2048

# Small configurations keep the Amaranth simulator fast; they differ in every parameter the
# engine's sequencing depends on (lanes vs. channels, RAM word vs. row width).
CONFIGS = {
    "l2w16": dict(lanes=2, post_lanes=2, ram_word_bytes=16, max_width=16, max_entries=8),
    "l3w8": dict(lanes=3, ram_word_bytes=8, max_width=24, max_entries=8, single_port_ram=True),
    # One lane, serial post (the iCE40 configuration's engine).
    "l1w8s": dict(lanes=1, ram_word_bytes=8, max_width=24, max_entries=8, single_port_ram=True,
                  serial_post=True),
}


def make_kpu(config):
    return Kpu(ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES, **CONFIGS[config])


def random_ram(rng):
    return bytearray(rng.randrange(256) for _ in range(RAM_BYTES))


def expected_after(layers, ram, weights):
    expected = bytearray(ram)
    for d in layers:
        model.run_layer(d, expected, weights)
    return expected


def assert_same_ram(got, expected):
    got, expected = np.frombuffer(got, np.uint8), np.frombuffer(expected, np.uint8)
    diff = np.flatnonzero(got != expected)
    assert diff.size == 0, (f"{diff.size} bytes differ, first at byte {diff[0]}: "
                            f"{got[diff[0]]} instead of {expected[diff[0]]}")


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("seed", range(5))
def test_random_layer_matches_model(config, seed):
    rng = random.Random(f"{config}-{seed}")
    kpu = make_kpu(config)
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              max_width=CONFIGS[config]["max_width"])
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000)
    assert [layer.reason for layer in run.layers] == [0]
    assert_same_ram(run.ram, expected_after([d], ram, weights))


@pytest.mark.parametrize("config", ["l2w16", "l1w8s"])
@pytest.mark.parametrize("pool_type", range(10))
def test_every_pool_type_3x3(pool_type, config):
    # l1w8s: the one-lane pooling and write bank behind the serial post.
    rng = random.Random(f"pool-{pool_type}")
    kpu = make_kpu(config)
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              max_width=9, max_height=9, kernel_size=3, depthwise=False,
                              pool_type=pool_type)
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000)
    assert_same_ram(run.ram, expected_after([d], ram, weights))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_depthwise(kernel_size):
    rng = random.Random(f"dw-{kernel_size}")
    kpu = make_kpu("l2w16")
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              max_channels=5, kernel_size=kernel_size, depthwise=True)
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000)
    assert_same_ram(run.ram, expected_after([d], ram, weights))


@pytest.mark.parametrize("kernel_size,seed", [(3, n) for n in range(6)] + [(1, 0)])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_one_column_map(config, kernel_size, seed):
    """A map one pixel wide: every entry accumulates into the same word, and a 3×3 group's last
    two windows would reach the accumulators on consecutive cycles (the engine delays the
    flush's window a cycle: the block RAM's read of a word being written is undefined, and
    poisoned in simulation). Most outputs
    of a random layer saturate, so a wrong accumulator shows in few bytes: hence six seeds."""
    rng = random.Random(f"one-column-{config}-{kernel_size}-{seed}")
    kpu = make_kpu(config)
    channels = 4 if kernel_size == 3 else 20          # several entries either way
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              kernel_size=kernel_size, depthwise=False, pool_type=0,
                              shape=(channels, 3, 3, 1))
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000)
    assert [layer.reason for layer in run.layers] == [0]
    assert_same_ram(run.ram, expected_after([d], ram, weights))


def test_center_1x1_channel_limit():
    """With the serial post a 1×1 layer takes an entry per input channel (center_1x1): up to
    ``max_channels_1x1`` (9 · 8 on l1w8s) run, one more is CONFIG_LIMIT and changes nothing."""
    for channels, reason in [(72, GatewareReason.OK), (73, GatewareReason.CONFIG_LIMIT)]:
        kpu = make_kpu("l1w8s")
        assert kpu.engine.max_channels_1x1 == 72
        rng = random.Random(f"center-{channels}")
        d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                                  kernel_size=1, depthwise=False, pool_type=0,
                                  shape=(channels, 2, 2, 3))
        ram = random_ram(rng)
        run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=40_000)
        assert [layer.reason for layer in run.layers] == [reason]
        assert_same_ram(run.ram, expected_after([d], ram, weights) if reason == 0 else ram)


# Odd sizes; five output channels make several groups (three of 2 lanes, two of 3).
READ_SHAPES = {"l2w16": (3, 5, 7, 11), "l3w8": (3, 5, 5, 19), "l1w8s": (3, 2, 4, 13)}  # C,O,H,W


@pytest.mark.parametrize("depthwise", [False, True], ids=["plain", "depthwise"])
@pytest.mark.parametrize("kernel_size", [3, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_reads_each_input_word_once_per_group(config, kernel_size, depthwise):
    # Each output-channel group reads every RAM word of its input channels exactly once
    # (3×3: through the line buffer) and no other word.
    rng = random.Random(f"reads-{config}-{kernel_size}-{depthwise}")
    channels, out_channels, height, width = READ_SHAPES[config]
    if depthwise:
        out_channels = channels
    kpu = make_kpu(config)
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              kernel_size=kernel_size, depthwise=depthwise, pool_type=0,
                              shape=(channels, out_channels, height, width))
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000)
    assert_same_ram(run.ram, expected_after([d], ram, weights))
    word_bytes = CONFIGS[config]["ram_word_bytes"]
    offsets = d.image_src_addr * LINE_BYTES + fmap_byte_offsets(channels, height, width)
    groups = 1 if depthwise else -(-out_channels // CONFIGS[config]["lanes"])
    expected = {int(word): groups for word in np.unique(offsets // word_bytes)}
    assert dict(run.ram_reads) == expected


@pytest.mark.parametrize("kernel_size", [3, 1])
@pytest.mark.parametrize("word_bytes", [16, 8])
def test_wide_map_spans_several_ram_words(word_bytes, kernel_size):
    # 33 to 40 pixels: one channel per line, rows of three 16-byte or five 8-byte words, the
    # last one partial; 1×1: two entries of up to nine channels. 8-byte words: the single-port
    # configuration.
    rng = random.Random(f"wide-{word_bytes}-{kernel_size}")
    kpu = Kpu(ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES, lanes=2, max_width=40,
              max_entries=8, ram_word_bytes=word_bytes, single_port_ram=word_bytes == 8)
    shape = (11 if kernel_size == 1 else 3, 3, 4, rng.randint(33, 40))
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              kernel_size=kernel_size, depthwise=False, pool_type=0, shape=shape)
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000)
    assert_same_ram(run.ram, expected_after([d], ram, weights))


def test_layers_queued_back_to_back():
    # Three layers in the FIFO at once, each reading the previous one's output.
    rng = random.Random("chain")
    kpu = Kpu(ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES, fifo_layers=3, lanes=2,
              max_width=16, max_entries=8)
    weights = bytearray(rng.randrange(256) for _ in range(WEIGHT_BYTES))
    from nangua.hdl.kpu.descriptor import pack_activation, pack_batchnorm
    shapes = [(3, 4, 3, 0), (4, 5, 1, 1), (5, 2, 3, 8)]     # (C, O, k, pool)
    size, addr, line, layers = 8, 0, 0, []
    for n, (c, o, k, pool) in enumerate(shapes):
        w_addr = addr
        addr += o * c * k * k
        bn_addr = (addr + 7) // 8 * 8
        weights[bn_addr:bn_addr + 8 * o] = pack_batchnorm(
            [(rng.randint(1, 2 ** 10), rng.randint(6, 12), rng.randint(-2 ** 10, 2 ** 10))
             for _ in range(o)])
        act_addr = bn_addr + 8 * o
        weights[act_addr:act_addr + 144] = pack_activation(
            [(-2 ** 35 + s, 1 + s, 2, s) for s in range(16)])
        addr = act_addr + 144
        src = line
        line = 40 * (n + 1)
        d = make_layer(in_channels=c, out_channels=o, width=size, height=size, kernel_size=k,
                       pool_type=pool, src_addr=src, dst_addr=line, weights_addr=w_addr,
                       bn_addr=bn_addr, act_addr=act_addr, arg_x=-3, arg_w=-5, arg_add=70,
                       pad_value=7)
        layers.append(d)
        size //= {0: 1, 1: 2, 8: 1}[pool]
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, bytes(weights), [d.to_words() for d in layers],
                  timeout_cycles=30_000)
    assert [layer.reason for layer in run.layers] == [0, 0, 0]
    assert_same_ram(run.ram, expected_after(layers, ram, bytes(weights)))


# (C, O, k): 3×3 entries of 9 bytes; 1×1 entries of 9, 9 and 2 channels (the last one padded).
WEIGHT_SHAPES = {"3x3": (5, 2, 3), "1x1": (20, 3, 1)}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("shape", sorted(WEIGHT_SHAPES))
def test_every_weight_byte_reaches_its_tap(config, shape):
    # Post stages that keep the product sum (bn 1·acc, one linear activation segment) and a run
    # of weights at an odd byte address: a weight byte dropped, repeated or moved by the
    # coefficient loader changes the output (the model's own check below shows it does).
    from nangua.hdl.kpu.descriptor import pack_activation, pack_batchnorm
    rng = random.Random(f"taps-{config}-{shape}")
    channels, out_channels, k = WEIGHT_SHAPES[shape]
    width, height = 8, 4
    w_addr = 3
    shift = 12 if k == 3 else 11        # the sums' typical range onto 0..255
    weights = bytearray(rng.randrange(256) for _ in range(WEIGHT_BYTES))
    bn_addr = (w_addr + out_channels * channels * k * k + 7) // 8 * 8
    weights[bn_addr:bn_addr + 8 * out_channels] = pack_batchnorm([(1, 0, 0)] * out_channels)
    act_addr = bn_addr + 8 * out_channels
    weights[act_addr:act_addr + 144] = pack_activation(
        [(-2 ** 35, 0, 0, 0), (-1, 1, shift, 0)] + [(2 ** 35 - 1, 0, 0, 0)] * 14)
    d = make_layer(in_channels=channels, out_channels=out_channels, width=width, height=height,
                   kernel_size=k, src_addr=0, dst_addr=64, weights_addr=w_addr,
                   bn_addr=bn_addr, act_addr=act_addr, pad_value=rng.randrange(256))
    ram = random_ram(rng)
    expected = expected_after([d], ram, bytes(weights))
    for moved in (w_addr - 1, w_addr + 1):
        assert expected_after([d.replace(para_start_addr=moved)], ram, bytes(weights)) != expected
    run = run_kpu(make_kpu(config), ram, bytes(weights), [d.to_words()], timeout_cycles=20_000)
    assert [layer.reason for layer in run.layers] == [0]
    assert_same_ram(run.ram, expected)


def _valid_layer():
    return make_layer(in_channels=3, out_channels=2, width=6, height=5, kernel_size=3,
                      src_addr=0, dst_addr=20, weights_addr=0, bn_addr=56, act_addr=72)


ERROR_CASES = {
    "kernel_type": dict(kernel_type=2),
    "pool_type": dict(pool_type=12),
    "unsupported_mode": dict(first_stride=1),
    "channels": dict(depth_wise_layer=1),
    "output_size": dict(o_row_wid=5),
    "layout": dict(coef_group=2),
    "weight_loads": dict(load_time=2),
    "src_range": dict(image_src_addr=125),
    "dst_range": dict(image_dst_addr=127),
    "overlap": dict(image_dst_addr=3),
    "weight_range": dict(active_addr=2000),
    "weight_misaligned": dict(bwsx_base_addr=60),
    "too_wide": dict(i_row_wid=20, o_row_wid=20, coef_group=2, wb_group=2, row_switch_addr=1,
                     channel_byte_num=100, dma_total_byte=200),
    "too_many_entries": dict(i_ch_num=9, para_size=2 * 9 * 9, image_dst_addr=40),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_descriptor_reports_reason_and_writes_nothing(case):
    rng = random.Random(case)
    kpu = make_kpu("l2w16")                 # max_width 16, max_entries 8
    bad = _valid_layer().replace(**ERROR_CASES[case])
    expected = model.check(bad, ram_size=RAM_BYTES, weight_size=WEIGHT_BYTES)
    if expected == Reason.OK:
        expected = GatewareReason.CONFIG_LIMIT
    assert expected != GatewareReason.OK
    good = _valid_layer()
    weights = bytes(rng.randrange(256) for _ in range(WEIGHT_BYTES))
    ram = random_ram(rng)
    # The rejected layer is followed by a good one: the engine must go on.
    run = run_kpu(kpu, ram, weights, [bad.to_words(), good.to_words()], timeout_cycles=20_000)
    assert [layer.reason for layer in run.layers] == [expected, 0]
    assert run.layers[0].cycles == CHECK_LATENCY     # busy from the cycle after the check's start
    assert_same_ram(run.ram, expected_after([good], ram, weights))
    assert run.int_raw & INT_ERROR
    assert run.error_register == 1 | int(expected) << 8


def test_sixteen_bit_mode_is_rejected():
    rng = random.Random("16bit")
    kpu = make_kpu("l2w16")
    weights = bytes(rng.randrange(256) for _ in range(WEIGHT_BYTES))
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [_valid_layer().to_words()], eight_bit_mode=0)
    assert [layer.reason for layer in run.layers] == [GatewareReason.CONFIG_LIMIT]
    assert run.ram == ram


def test_done_interrupt_only_for_int_en_layers():
    rng = random.Random("int")
    weights = bytes(rng.randrange(256) for _ in range(WEIGHT_BYTES))
    ram = random_ram(rng)
    for int_en, expected in [(0, 0), (1, INT_DONE)]:
        d = _valid_layer().replace(int_en=int_en)
        run = run_kpu(make_kpu("l2w16"), ram, weights, [d.to_words()])
        assert run.int_raw & (INT_DONE | INT_ERROR) == expected


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_converts_to_verilog(config):
    verilog.convert(make_kpu(config), name="kpu", emit_src=False)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^KPU RAM size must be a multiple of 64 bytes in "
                                         r"64\.\.2097152, not 100$"):
        Kpu(ram_bytes=100)
    with pytest.raises(ValueError, match=r"^Weight memory size must be a multiple of 8 bytes, "
                                         r"at least 144, not 12$"):
        Kpu(weight_bytes=12)
    with pytest.raises(ValueError, match=r"^KPU RAM word must be 8 or 16 bytes, not 4$"):
        Kpu(ram_word_bytes=4)
    with pytest.raises(ValueError, match=r"^Lanes must be an integer in 1\.\.64, not 0$"):
        Kpu(lanes=0)
    with pytest.raises(ValueError, match=r"^Maximum width must be an integer in 1\.\.1024, "
                                         r"not 2000$"):
        Kpu(max_width=2000)
    with pytest.raises(ValueError, match=r"^FIFO depth must be a positive number of layers, "
                                         r"not 0$"):
        Kpu(fifo_layers=0)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_host_ports_write_and_read_memories(config):
    # l3w8 and l1w8s keep the KPU RAM and the weights in one single-port memory with one host
    # port: the weights sit above the RAM words, and neither's writes reach the other's words.
    from amaranth.sim import Simulator
    kpu = make_kpu(config)
    single = kpu.engine.single_port_ram
    assert single == (not hasattr(kpu, "weights"))
    weight_port, weight_base = (kpu.ram, kpu.weight_offset) if single else (kpu.weights, 0)
    word_bytes = CONFIGS[config]["ram_word_bytes"]
    ones = (1 << 8 * word_bytes) - 1
    ram_words = {0: 0x0123456789ABCDEF_FEDCBA9876543210 & ones, 3: 0x5A5A5A5A5A5A5A5A5A & ones,
                 RAM_BYTES // word_bytes - 1: ones}
    weight_words = {0: 0x1122334455667788, 7: 0x8877665544332211,
                    WEIGHT_BYTES // 8 - 1: 0xFFFF0000FFFF0000}
    assert kpu.weight_offset == (RAM_BYTES // 8 if kpu.engine.single_port_ram else 0)

    async def write(ctx, port, addr, value, w_en):
        ctx.set(port.addr, addr)
        ctx.set(port.w_data, value)
        ctx.set(port.w_en, w_en)
        await ctx.tick()
        ctx.set(port.w_en, 0)

    async def read(ctx, port, addr):
        ctx.set(port.addr, addr)
        ctx.set(port.r_en, 1)
        await ctx.tick()
        ctx.set(port.r_en, 0)
        return ctx.get(port.r_data)

    async def bench(ctx):
        for addr, value in ram_words.items():
            await write(ctx, kpu.ram, addr, value, (1 << word_bytes) - 1)
        for addr, value in weight_words.items():
            await write(ctx, weight_port, weight_base + addr, value, 0xFF)
        # A byte-enabled write changes only the enabled bytes.
        await write(ctx, kpu.ram, 3, 0, 0b1)
        await write(ctx, weight_port, weight_base + 7, 0, 0b10)
        for addr, value in weight_words.items():
            want = value & ~0xFF00 if addr == 7 else value
            assert await read(ctx, weight_port, weight_base + addr) == want
            assert ctx.get(kpu.weight_memory.data[kpu.weight_offset + addr]) == want
        for addr, value in ram_words.items():
            assert await read(ctx, kpu.ram, addr) == (value & ~0xFF if addr == 3 else value)
        # r_data holds while nothing is read.
        ctx.set(kpu.ram.addr, 0)
        await ctx.tick()
        assert ctx.get(kpu.ram.r_data) == ram_words[RAM_BYTES // word_bytes - 1]

    sim = Simulator(kpu)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_single_port_layer_loaded_through_host_ports():
    # The host writes the weights through the one host port into the memory they share with
    # the KPU RAM, above its words; the engine reads them from there (run_kpu checks every
    # cycle that it never uses the shared port twice).
    rng = random.Random("host-ports")
    kpu = make_kpu("l3w8")
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              max_width=CONFIGS["l3w8"]["max_width"], kernel_size=3,
                              depthwise=False)
    ram = random_ram(rng)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=20_000, through_ports=True)
    assert [layer.reason for layer in run.layers] == [0]
    assert_same_ram(run.ram, expected_after([d], ram, weights))


def test_single_port_check_catches_a_second_access(monkeypatch):
    # The check of run_kpu can fail: an engine with separate ports (l2w16) loads its side
    # tables while the group reads the KPU RAM. Claimed to be single-port, it must be caught.
    from nangua.hdl.kpu.engine import KpuEngine
    rng = random.Random("collide")
    kpu = make_kpu("l2w16")
    monkeypatch.setattr(KpuEngine, "single_port_ram", property(lambda self: True))
    d, weights = random_layer(rng, ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES,
                              max_width=CONFIGS["l2w16"]["max_width"], kernel_size=3)
    with pytest.raises(AssertionError, match=r"accesses to the single memory port$"):
        run_kpu(kpu, random_ram(rng), weights, [d.to_words()], timeout_cycles=20_000)


def test_interrupt_mask_clear_and_fifo_flush():
    from amaranth.sim import Simulator
    from nangua.hdl.kpu.kpu import Register
    from nangua.sim.kpu import read_register, write_register
    kpu = make_kpu("l2w16")
    bad = _valid_layer().replace(kernel_type=2).to_words()
    settle = CHECK_LATENCY + 6              # cycles for a written descriptor to be rejected

    async def bench(ctx):
        assert not ctx.get(kpu.irq)         # FIFO-low is masked at reset, nothing else raised
        for word in bad:
            await write_register(ctx, kpu, Register.LAYER_FIFO, word)
        for _ in range(settle):
            await ctx.tick()
        assert await read_register(ctx, kpu, Register.INT_RAW) & INT_ERROR
        assert ctx.get(kpu.irq)
        assert await read_register(ctx, kpu, Register.ERROR) == 1 | Reason.KERNEL_TYPE << 8
        await write_register(ctx, kpu, Register.INT_MASK, 0b111)
        assert not ctx.get(kpu.irq)
        await write_register(ctx, kpu, Register.INT_MASK, 0b100)
        await write_register(ctx, kpu, Register.INT_CLEAR, INT_ERROR)
        assert not ctx.get(kpu.irq)
        assert await read_register(ctx, kpu, Register.INT_RAW) & INT_ERROR == 0
        # Half a descriptor, then a flush: nothing runs, the FIFO is empty again.
        for word in bad[:6]:
            await write_register(ctx, kpu, Register.LAYER_FIFO, word)
        await write_register(ctx, kpu, Register.FIFO_CTRL, 1)
        for _ in range(settle):
            await ctx.tick()
        status = await read_register(ctx, kpu, Register.STATUS)
        assert status & 1 == 0 and (status >> 16) & 0xFFFF == 0 and status >> 32 == 1
        for word in bad:                    # and the next descriptor is whole again
            await write_register(ctx, kpu, Register.LAYER_FIFO, word)
        for _ in range(settle):
            await ctx.tick()
        assert (await read_register(ctx, kpu, Register.STATUS)) >> 32 == 2

    sim = Simulator(kpu)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_fifo_low_interrupt_follows_threshold():
    """INT_RAW bit 2 is ``FIFO words <= FIFO_THRESHOLD``, for thresholds wider than the level
    too. Words queue while a layer runs (the engine takes the next descriptor only when idle)."""
    from amaranth.sim import Simulator
    from nangua.hdl.kpu.kpu import INT_FIFO_LOW, Register
    from nangua.sim.kpu import read_register, write_register
    kpu = make_kpu("l2w16")
    words = _valid_layer().to_words()

    async def bench(ctx):
        for word in words:
            await write_register(ctx, kpu, Register.LAYER_FIFO, word)
        for _ in range(CHECK_LATENCY + 6):
            await ctx.tick()
        for word in words[:5]:
            await write_register(ctx, kpu, Register.LAYER_FIFO, word)
        status = await read_register(ctx, kpu, Register.STATUS)
        assert status & 1 and (status >> 16) & 0xFFFF == 5      # running, five words queued
        for threshold, low in [(4, 0), (5, 1), (0, 0), (6, 1), (0x20, 1), (0x8000, 1),
                               (0x8004, 1)]:
            await write_register(ctx, kpu, Register.FIFO_THRESHOLD, threshold)
            assert await read_register(ctx, kpu, Register.FIFO_THRESHOLD) == threshold
            raw = await read_register(ctx, kpu, Register.INT_RAW)
            assert bool(raw & INT_FIFO_LOW) == bool(low), hex(threshold)

    sim = Simulator(kpu)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_dsp_budget_goes_to_post_products_first():
    """On ECP5 the post pipeline's wide products take their MULT18X18D first, the MAC array
    the rest of the budget; a budget below the post pipeline's needs is refused."""
    from amaranth.back import rtlil
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    from nangua.hdl.kpu.engine import KpuEngine
    post = KpuEngine.post_dsps_of(1, CONFIGS["l2w16"]["max_entries"])
    assert post == 2 + 1 * (4 + 2)      # x term; batch-norm 36×24, activation 37×16
    config = dict(CONFIGS["l2w16"], post_lanes=1)
    kpu = Kpu(ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES, platform=ULX3S_85F_Platform(),
              dsp_budget=post + 5, **config)
    assert rtlil.convert(kpu, name="kpu").count("MULT18X18D") == post + 5
    with pytest.raises(ValueError, match=rf"^DSP budget must be an integer in {post}\.\."):
        Kpu(ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES, platform=ULX3S_85F_Platform(),
            dsp_budget=post - 1, **config)
