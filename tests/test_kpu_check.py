"""The bit-serial descriptor check and weight terms against the golden model
(:func:`nangua.hdl.kpu.model.check`, Python integers)."""

import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from nangua.hdl.kpu import model
from nangua.hdl.kpu.check import (CHECK_LATENCY, SUPPORTED_VALUES, DescriptorCheck, WeightTerms,
                                  config_limited)
from nangua.hdl.kpu.descriptor import (FIELDS, PoolType, Reason, _field_range, make_layer,
                                       pool_stride)
from nangua.hdl.kpu.featuremap import fmap_lines
from nangua.hdl.kpu.layouts import GatewareReason
from nangua.hdl.kpu.post import ACC_BITS

RAM_BYTES = 128 * 1024              # 2048 lines: large maps overrun it, small ones fit
WEIGHT_BYTES = 64 * 1024
#: 1×1 layers: 300 input channels, not the 9 · 64 of nine channels an entry (as with center_1x1,
#: where the limit is the coefficient buffer's depth), so random layers cross both limits.
LIMITS = dict(max_width=64, max_entries=64, max_channels_1x1=300)


def expected_reason(d, eight_bit_mode=1, ram_bytes=RAM_BYTES):
    reason = model.check(d, ram_size=ram_bytes, weight_size=WEIGHT_BYTES)
    if reason == Reason.OK and config_limited(d, eight_bit_mode=eight_bit_mode, **LIMITS):
        return GatewareReason.CONFIG_LIMIT
    return GatewareReason(reason)


def _size(rng, top, small=80):
    """Small, anywhere up to ``top``, or close to ``top`` (where products need their top bits)."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randint(1, min(small, top))
    if kind == 1:
        return rng.randint(1, top)
    return top - rng.randrange(top // 8)


def random_valid(rng):
    """A descriptor make_layer accepts, from tiny to as large as the fields allow."""
    while True:
        k = rng.choice([1, 3])
        dw = rng.random() < 0.25
        pool = rng.choice(list(PoolType))
        stride = pool_stride(pool)
        small = rng.random() < 0.5              # likely to fit the memories and the limits

        def size(top, small_top=80):
            return rng.randint(1, small_top) if small else _size(rng, top, small_top)
        width = max(stride, size(960))
        height = max(stride, size(512, 40))
        channels = size(1024)
        out_channels = channels if dw else size(1024)
        src = rng.randrange(512 if small else 1 << 15)
        dst = rng.randrange(1 << 15)
        if small and rng.random() < 0.7:    # most small maps side by side, not overlapping
            dst = min(src + fmap_lines(channels, height, width) + rng.randrange(64), 2 ** 15 - 1)
        try:
            return make_layer(
                in_channels=channels, out_channels=out_channels, width=width, height=height,
                kernel_size=k, depthwise=dw, pool_type=pool,
                src_addr=src, dst_addr=dst,
                weights_addr=rng.randrange(4096 if small else WEIGHT_BYTES),
                bn_addr=8 * rng.randrange(256),
                act_addr=8 * rng.randrange(4096 if small else 1 << 29),
                arg_x=rng.randint(-2 ** 23, 2 ** 23 - 1), shr_x=rng.randrange(16),
                arg_w=rng.randint(-2 ** 23, 2 ** 23 - 1), shr_w=rng.randrange(16),
                arg_add=rng.randint(-2 ** 39, 2 ** 39 - 1), pad_value=rng.randrange(256))
        except ValueError:                  # a combination the KPU cannot encode
            continue


#: Layers at the fields' limits (each sets the top bit of some product's operand): 256×256
#: output planes (channel_byte_num 65536), 1024 channels a load, 1024 input channels (3×3:
#: 9216 weight bytes an output channel), 512 rows, 960 columns (15 lines a row). Their reasons
#: are mostly range errors, reached only if every earlier product was right.
EDGE_LAYERS = [
    dict(in_channels=1, out_channels=1024, width=256, height=256, kernel_size=1),
    dict(in_channels=1024, out_channels=1024, width=4, height=4, kernel_size=3,
         depthwise=True),
    dict(in_channels=1024, out_channels=3, width=8, height=8, kernel_size=3),
    dict(in_channels=1024, out_channels=1, width=4, height=4, kernel_size=3, dst_addr=1100,
         weights_addr=WEIGHT_BYTES - 9215),                       # 9216 weight bytes: 1 too many
    dict(in_channels=1024, out_channels=30, width=2, height=512, kernel_size=1),
    dict(in_channels=4, out_channels=1024, width=960, height=34, kernel_size=1,
         pool_type=PoolType.MAX_2_S1),
    dict(in_channels=3, out_channels=2, width=64, height=64, kernel_size=3,
         pool_type=PoolType.MEAN_4_S4, src_addr=100, dst_addr=2000, weights_addr=WEIGHT_BYTES - 54,
         bn_addr=WEIGHT_BYTES - 160, act_addr=WEIGHT_BYTES - 144, arg_add=-2 ** 39),
]


def mutate(rng, d):
    """``d`` with one to three fields changed: to a random value of the field, or by ±1."""
    changes = {}
    for field in rng.sample(FIELDS, rng.randint(1, 3)):
        low, high = _field_range(field)
        value = getattr(d, field.name)
        if rng.random() < 0.5:
            value = rng.randint(low, high)
        else:
            value = min(high, max(low, value + rng.choice([-1, 1])))
        changes[field.name] = value
    return d.replace(**changes)


def wrapped_add_term(d):
    """``arg_add · G`` as the check gives it: modulo 2**ACC_BITS, signed."""
    return model.wrap_signed(d.arg_add * (1 if d.depth_wise_layer else d.i_ch_num), ACC_BITS)


def run_checks(cases, ram_bytes=RAM_BYTES):
    """Check each ``(descriptor, eight_bit_mode)``, its words latched in order (the last with
    ``start``, as the engine does); returns [(reason, add_term, cycles)]."""
    dut = DescriptorCheck(ram_lines=ram_bytes // 64, weight_bytes=WEIGHT_BYTES, **LIMITS)
    results = []
    scramble = random.Random("scramble")

    async def load(ctx, words, start):
        ctx.set(dut.load, 1)
        for index, word in enumerate(words):
            ctx.set(dut.index, index)
            ctx.set(dut.word, word)
            ctx.set(dut.start, start and index == len(words) - 1)
            await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.start, 0)

    async def bench(ctx):
        for d, eight_bit_mode in cases:
            ctx.set(dut.eight_bit_mode, eight_bit_mode)
            await load(ctx, d.to_words(), start=True)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            results.append((ctx.get(dut.reason), ctx.get(dut.add_term), cycles))
            # Other words latched after done: the results must hold until the next start.
            await load(ctx, [scramble.getrandbits(64) for _ in range(12)], start=False)
            assert (ctx.get(dut.reason), ctx.get(dut.add_term)) == results[-1][:2]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


#: A RAM of 3072 lines (ECP5's): line numbers too wide to rotate through the check's ring.
WIDE_RAM_BYTES = 192 * 1024


@pytest.mark.parametrize("seed,ram_bytes", [(0, RAM_BYTES), (1, RAM_BYTES),
                                            (2, WIDE_RAM_BYTES)])
def test_check_matches_model_on_random_descriptors(seed, ram_bytes):
    rng = random.Random(f"check-{seed}")
    valid = [random_valid(rng) for _ in range(150)]
    valid += [make_layer(**params) for params in EDGE_LAYERS]
    cases = [(d, 1) for d in valid]
    cases += [(mutate(rng, rng.choice(valid)), 1) for _ in range(350)]
    cases += [(d, 0) for d in rng.sample(valid, 10)]
    results = run_checks(cases, ram_bytes)
    reached = set()
    for (d, eight_bit_mode), (reason, add_term, cycles) in zip(cases, results):
        expected = expected_reason(d, eight_bit_mode, ram_bytes)
        reached.add(expected)
        assert (GatewareReason(reason), d) == (expected, d)
        assert add_term % 2 ** ACC_BITS == wrapped_add_term(d) % 2 ** ACC_BITS
        assert cycles == CHECK_LATENCY
    # The mutations reach every reason, and several faults at once test the order.
    assert reached == set(GatewareReason)


def test_check_reasons_in_priority_order():
    """A descriptor with every fault at once, cleared one fault at a time from the first."""
    rng = random.Random("order")
    while True:                         # a layer valid but for the configuration's width
        d = random_valid(rng)
        if (not d.depth_wise_layer and d.i_ch_num != d.o_ch_num
                and expected_reason(d) == GatewareReason.CONFIG_LIMIT and d.i_row_wid > 64):
            break
    end = RAM_BYTES // 64
    faults = [  # one per reason, in the order of the reason codes
        dict(kernel_type=2), dict(pool_type=10), dict(first_stride=1),
        dict(depth_wise_layer=1), dict(o_row_wid=d.o_row_wid + 1),
        dict(coef_group=3), dict(para_size=d.para_size + 1),
        dict(image_src_addr=end), dict(image_dst_addr=end), dict(image_dst_addr=d.image_src_addr),
        dict(active_addr=WEIGHT_BYTES), dict(),
    ]
    cases = []
    for first in range(len(faults)):
        changes = {}
        for fault in reversed(faults[first:]):   # earlier faults win over later ones
            changes.update(fault)
        cases.append((d.replace(**changes), 1))
    results = run_checks(cases)
    got = [GatewareReason(reason) for reason, _, _ in results]
    assert got == [expected_reason(case) for case, _ in cases]
    assert got == list(GatewareReason)[1:]


@pytest.mark.parametrize("out_channels", [1, 7, 64, 1024])
def test_check_weight_loads_at_their_bounds(out_channels):
    """Channels a load and load counts on both sides of ``⌈O / PL⌉`` and of ``PL ≤ O``."""
    d = make_layer(in_channels=2, out_channels=out_channels, width=4, height=4, kernel_size=1,
                   src_addr=0, dst_addr=1024, weights_addr=0, bn_addr=8192, act_addr=16384)
    cases = []
    for per_load in sorted({1, 2, out_channels // 2 or 1, out_channels - 1 or 1, out_channels,
                            min(out_channels + 1, 1024)}):
        loads = -(-out_channels // per_load)
        for load_time in sorted({1, loads - 1 or 1, loads, min(loads + 1, 64)}):
            if loads > 64 and load_time == 1:
                continue
            cases.append((d.replace(o_ch_num_coef=per_load, load_time=min(load_time, 64),
                                    para_size=per_load * 2), 1))
    results = run_checks(cases)
    got = [GatewareReason(reason) for reason, _, _ in results]
    assert got == [expected_reason(case) for case, _ in cases]
    assert {GatewareReason.OK, GatewareReason.WEIGHT_LOADS} <= set(got)


@pytest.mark.parametrize("kernel_size,channels,width,height", [(3, 5, 20, 20), (1, 12, 70, 10)])
def test_check_ranges_at_memory_ends(kernel_size, channels, width, height):
    """Maps and tables that end exactly at the end of their memory, and one line or entry
    beyond it (an off-by-one in a limit fails here)."""
    lines = RAM_BYTES // 64
    d = make_layer(in_channels=channels, out_channels=channels + 1, width=width, height=height,
                   kernel_size=kernel_size, src_addr=0, dst_addr=0, weights_addr=0,
                   bn_addr=0, act_addr=0)
    src_end = lines - d.input_lines                     # input map at the end of the RAM
    dst_end = lines - d.output_lines
    weights = model.layer_weight_bytes(d)
    cases = []
    for past in (0, 1):
        cases += [d.replace(image_src_addr=src_end + past, image_dst_addr=0),
                  d.replace(image_src_addr=0, image_dst_addr=dst_end + past)]
        place = dict(image_src_addr=0, image_dst_addr=d.input_lines)
        cases += [d.replace(para_start_addr=WEIGHT_BYTES - weights + past, **place),
                  d.replace(bwsx_base_addr=WEIGHT_BYTES - 8 * d.o_ch_num + 8 * past, **place),
                  d.replace(active_addr=WEIGHT_BYTES - 144 + 8 * past, **place)]
    results = run_checks([(case, 1) for case in cases])
    got = [GatewareReason(reason) for reason, _, _ in results]
    assert got == [expected_reason(case) for case in cases]
    assert got[:5] == [GatewareReason.CONFIG_LIMIT if width > LIMITS["max_width"]
                       else GatewareReason.OK] * 5
    assert got[5:] == [GatewareReason.SRC_RANGE, GatewareReason.DST_RANGE] + \
        [GatewareReason.WEIGHT_RANGE] * 3


@pytest.mark.parametrize("kernel_size,channels,width,height", [(3, 5, 20, 20), (1, 40, 8, 9)])
def test_check_overlap_at_its_bounds(kernel_size, channels, width, height):
    """Input and output maps side by side, and overlapping by one line, each first, where the
    ends cross bit 10 of the line numbers and at the end of the RAM (an off-by-one in a
    bit-serial comparison fails here)."""
    lines = RAM_BYTES // 64
    d = make_layer(in_channels=channels, out_channels=channels + 1, width=width, height=height,
                   kernel_size=kernel_size, src_addr=0, dst_addr=0, weights_addr=0,
                   bn_addr=4096, act_addr=8192)
    n_in, n_out = d.input_lines, d.output_lines
    cases = []
    for base in (0, 1024 - n_in, 1024 - n_out, 1023, lines - n_in - n_out):
        for touch in (0, 1):                           # side by side, one line shared
            cases += [d.replace(image_src_addr=base, image_dst_addr=base + n_in - touch),
                      d.replace(image_dst_addr=base, image_src_addr=base + n_out - touch)]
    cases = [case for case in cases if max(case.image_src_addr, case.image_dst_addr) < lines]
    results = run_checks([(case, 1) for case in cases])
    got = [GatewareReason(reason) for reason, _, _ in results]
    assert got == [expected_reason(case) for case in cases]
    assert got.count(GatewareReason.OVERLAP) == len(got) // 2


def flip_bit(d, field, bit):
    """``d`` with one bit of a field's word flipped."""
    value = getattr(d, field.name)
    if field.signed:
        word = (value % (1 << field.width)) ^ (1 << bit)
        return d.replace(**{field.name: word - ((word >> (field.width - 1)) << field.width)})
    base = 1 if field.minus_one else 0
    return d.replace(**{field.name: ((value - base) ^ (1 << bit)) + base})


#: Fields the check compares with products or multiplies, bit by bit.
PRODUCT_FIELDS = ["channel_switch_addr", "wb_channel_switch_addr", "channel_byte_num",
                  "dma_total_byte", "para_size", "load_time", "o_ch_num_coef", "o_ch_num",
                  "i_ch_num", "o_col_high", "image_src_addr", "image_dst_addr",
                  "para_start_addr", "arg_add"]
#: Fields latched as a flag (the unsupported modes), or narrowed with a flag for their upper
#: bits (besides some of PRODUCT_FIELDS).
FLAG_FIELDS = list(SUPPORTED_VALUES) + ["kernel_type", "bwsx_base_addr", "active_addr"]


def test_check_single_bit_flips():
    """Every bit of the fields the check compares bit-serially or keeps as a flag, flipped
    alone (a step that compares a wrong bit, or none, or a flag that misses a bit fails
    here)."""
    fields = [field for field in FIELDS if field.name in PRODUCT_FIELDS + FLAG_FIELDS]
    assert len(fields) == len(PRODUCT_FIELDS + FLAG_FIELDS)
    bases = [make_layer(**EDGE_LAYERS[6]),
             make_layer(in_channels=1024, out_channels=300, width=4, height=5, kernel_size=1,
                        src_addr=0, dst_addr=1300, weights_addr=0, bn_addr=0, act_addr=0)]
    cases = [(flip_bit(d, field, bit), 1)
             for d in bases for field in fields for bit in range(field.width)]
    results = run_checks(cases)
    reached = set()
    for (d, _), (reason, add_term, _) in zip(cases, results):
        assert (GatewareReason(reason), d) == (expected_reason(d), d)
        reached.add(GatewareReason(reason))
        assert add_term % 2 ** ACC_BITS == wrapped_add_term(d) % 2 ** ACC_BITS
    R = GatewareReason
    assert {R.KERNEL_TYPE, R.UNSUPPORTED_MODE, R.LAYOUT, R.SRC_RANGE, R.DST_RANGE,
            R.WEIGHT_RANGE} <= reached


def _run_terms(lanes, sum_bits, groups):
    """Each group: (arg_w, shr_w, sums) loaded lane by lane, the last with ``start``."""
    dut = WeightTerms(lanes=lanes, sum_bits=sum_bits)
    got = []

    async def bench(ctx):
        for arg_w, shr_w, sums in groups:
            for j, value in enumerate(sums):
                ctx.set(dut.load, 1)
                ctx.set(dut.lane, j)
                ctx.set(dut.sum, value)
                ctx.set(dut.start, j == len(sums) - 1)
                await ctx.tick()
                assert not ctx.get(dut.ready)
            ctx.set(dut.load, 0)
            ctx.set(dut.start, 0)
            ctx.set(dut.arg_w, arg_w)
            ctx.set(dut.shr_w, shr_w)
            cycles = 0
            while not ctx.get(dut.ready):
                await ctx.tick()
                cycles += 1
            assert cycles == sum_bits + shr_w
            got.append([ctx.get(dut.terms[j]) for j in range(len(sums))])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("lanes,sum_bits", [(1, 18), (3, 15)])
def test_weight_terms_match_python(lanes, sum_bits):
    rng = random.Random(f"terms-{lanes}-{sum_bits}")
    top = 2 ** sum_bits - 1
    groups = [(-2 ** 23, 15, [top] * lanes), (2 ** 23 - 1, 0, [top] * lanes),
              (-1, 1, [1] * lanes), (-3, 0, [0] * lanes)]
    groups += [(rng.randint(-2 ** 23, 2 ** 23 - 1), rng.randrange(16),
                [rng.randrange(2 ** sum_bits) for _ in range(rng.randint(1, lanes))])
               for _ in range(30)]
    got = _run_terms(lanes, sum_bits, groups)
    assert got == [[(arg_w * s) >> shr_w for s in sums] for arg_w, shr_w, sums in groups]


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^Maximum width must be an integer in 1\.\.1024, "
                                         r"not 0$"):
        DescriptorCheck(ram_lines=2048, weight_bytes=16384, max_width=0, max_entries=64)
    with pytest.raises(ValueError, match=r"^Weight memory bytes must be an integer in "
                                         r"144\.\.4294967296, not 100$"):
        DescriptorCheck(ram_lines=2048, weight_bytes=100, max_width=64, max_entries=64)
    with pytest.raises(ValueError, match=r"^Maximum 1×1 channels must be an integer in "
                                         r"1\.\.72, not 73$"):
        DescriptorCheck(ram_lines=2048, weight_bytes=16384, max_width=64, max_entries=8,
                        max_channels_1x1=73)
    with pytest.raises(ValueError, match=r"^Lanes must be an integer in 1\.\.64, not 0$"):
        WeightTerms(lanes=0, sum_bits=18)


def test_check_converts_to_verilog():
    verilog.convert(DescriptorCheck(ram_lines=2048, weight_bytes=16384, **LIMITS),
                    name="check", emit_src=False)
    verilog.convert(WeightTerms(lanes=2, sum_bits=18), name="terms", emit_src=False)
