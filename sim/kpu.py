"""Drive a simulated :class:`nangua.hdl.kpu.kpu.Kpu` the way host software would.

:func:`run_kpu` loads a KPU RAM image and a weight memory, queues layer descriptors through the
register bus (the ``LAYER_FIFO`` register, 12 words each), waits for every layer to finish or be
rejected, and returns the RAM afterwards with what happened to each layer and which RAM words
the engine read. Memories are loaded and read back through the simulator
(``ctx.set``/``ctx.get`` on the memory rows) to keep tests fast, or, with
``through_ports=True``, through the KPU's host ports as host software would.

Every cycle it also checks the single-port contract of a ``single_port_ram`` KPU, whose KPU RAM
and weights share one SPRAM port: the engine never reads and writes the KPU RAM, nor reads a
weight while it uses the KPU RAM, in the same cycle (``AssertionError`` otherwise).
"""

from collections import Counter
from dataclasses import dataclass

from amaranth.sim import Simulator

from nangua.hdl.kpu.kpu import Register

__all__ = ["LayerResult", "KpuRun", "run_kpu", "pack_words", "unpack_words",
           "write_memory", "read_memory", "random_layer"]


@dataclass
class LayerResult:
    """One layer as the gateware reported it: ``reason`` (0 when it ran) and the cycles from
    the engine accepting the descriptor to its ``done`` pulse."""
    reason: int
    cycles: int


@dataclass
class KpuRun:
    """What :func:`run_kpu` saw: the RAM afterwards, :class:`LayerResult` per descriptor, the
    ``INT_RAW`` and ``ERROR`` registers, and ``ram_reads``: how often the engine read each KPU
    RAM word (word address → reads, counted on the cycles its read enable is 1)."""
    ram: bytearray
    layers: list
    int_raw: int
    error_register: int
    ram_reads: Counter


def pack_words(image, word_bytes):
    """Split a bytes-like image into little-endian integer words."""
    return [int.from_bytes(image[i:i + word_bytes], "little")
            for i in range(0, len(image), word_bytes)]


def unpack_words(words, word_bytes):
    return bytearray(b"".join(w.to_bytes(word_bytes, "little") for w in words))


def run_kpu(kpu, ram, weights, descriptors, *, timeout_cycles=200_000, eight_bit_mode=1,
            through_ports=False):
    """Run ``descriptors`` (lists of 12 words) on a fresh simulation of ``kpu``.

    Raises
    ------
    TimeoutError
        If the layers have not all finished after ``timeout_cycles`` cycles.
    AssertionError
        If a ``single_port_ram`` engine uses its memories' one port twice in a cycle.
    """
    ram_word = kpu.engine.ram_word_bytes
    if len(ram) != kpu.ram_bytes or len(weights) > kpu.weight_bytes:
        raise ValueError(f"RAM image must be {kpu.ram_bytes} bytes and weights at most "
                         f"{kpu.weight_bytes}, not {len(ram)} and {len(weights)}")
    weights = bytes(weights) + bytes(kpu.weight_bytes - len(weights))
    result = {}

    layers = []
    ram_reads = Counter()

    engine = kpu.engine

    async def monitor(ctx):
        # Runs from cycle 0: a rejected layer finishes while later descriptors are still being
        # written.
        start = None
        cycle = 0
        while True:
            await ctx.tick()
            cycle += 1
            ram_read = ctx.get(engine.ram_rd.en)
            if ram_read:
                ram_reads[ctx.get(engine.ram_rd.addr)] += 1
            if engine.single_port_ram:
                accesses = (ram_read + bool(ctx.get(engine.ram_wr.en))
                            + ctx.get(engine.w_rd.en))
                if accesses > 1:
                    raise AssertionError(f"cycle {cycle}: {accesses} accesses to the single "
                                         f"memory port")
            if ctx.get(kpu.engine.busy) and start is None:
                start = cycle
            if ctx.get(kpu.engine.done):
                layers.append(LayerResult(reason=ctx.get(kpu.engine.reason),
                                          cycles=cycle - start))
                start = None

    async def bench(ctx):
        if through_ports:
            await write_memory(ctx, kpu.ram, pack_words(ram, ram_word))
            if engine.single_port_ram:     # one host port: weights above the RAM words
                await write_memory(ctx, kpu.ram, pack_words(weights, 8), kpu.weight_offset)
            else:
                await write_memory(ctx, kpu.weights, pack_words(weights, 8))
        else:
            for i, word in enumerate(pack_words(ram, ram_word)):
                ctx.set(kpu.ram_memory.data[i], word)
            for i, word in enumerate(pack_words(weights, 8)):
                ctx.set(kpu.weight_memory.data[kpu.weight_offset + i], word)
        if not eight_bit_mode:
            await write_register(ctx, kpu, Register.EIGHT_BIT_MODE, 0)
        for words in descriptors:
            for word in words:
                await write_register(ctx, kpu, Register.LAYER_FIFO, word)
        for _ in range(timeout_cycles):
            if len(layers) == len(descriptors):
                break
            await ctx.tick()
        else:
            raise TimeoutError(f"{len(layers)} of {len(descriptors)} layers finished in "
                               f"{timeout_cycles} cycles")
        await ctx.tick()
        result["int_raw"] = await read_register(ctx, kpu, Register.INT_RAW)
        result["error"] = await read_register(ctx, kpu, Register.ERROR)
        result["layers"] = list(layers)
        if through_ports:
            words = await read_memory(ctx, kpu.ram, kpu.ram_bytes // ram_word)
        else:
            words = [ctx.get(kpu.ram_memory.data[i]) for i in range(kpu.ram_bytes // ram_word)]
        result["ram"] = unpack_words(words, ram_word)

    sim = Simulator(kpu)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(bench)
    sim.run()
    return KpuRun(ram=result["ram"], layers=result["layers"], int_raw=result["int_raw"],
                  error_register=result["error"], ram_reads=ram_reads)


async def write_register(ctx, kpu, register, value):
    ctx.set(kpu.bus.addr, register)
    ctx.set(kpu.bus.w_data, value)
    ctx.set(kpu.bus.w_stb, 1)
    await ctx.tick()
    ctx.set(kpu.bus.w_stb, 0)


async def read_register(ctx, kpu, register):
    ctx.set(kpu.bus.addr, register)
    await ctx.tick()
    return ctx.get(kpu.bus.r_data)


async def write_memory(ctx, port, words, base=0):
    """Write ``words`` from word ``base`` through a host memory port, one a cycle."""
    ctx.set(port.w_en, (1 << len(port.w_en)) - 1)
    for addr, word in enumerate(words, base):
        ctx.set(port.addr, addr)
        ctx.set(port.w_data, word)
        await ctx.tick()
    ctx.set(port.w_en, 0)


async def read_memory(ctx, port, count):
    """Read words 0 to ``count − 1`` through a host memory port, one a cycle."""
    words = []
    ctx.set(port.r_en, 1)
    for addr in range(count):
        ctx.set(port.addr, addr)
        await ctx.tick()
        words.append(ctx.get(port.r_data))
    ctx.set(port.r_en, 0)
    return words


def random_layer(rng, *, ram_bytes, weight_bytes, min_width=1, max_width=16, max_height=8,
                 max_channels=6, max_out_channels=5, kernel_size=None, depthwise=None,
                 pool_type=None, shape=None):
    """A random valid layer and the weight memory it reads, for tests: random sizes, kernel,
    pool, conv arguments, batch-norm and activation tables, weights at a random (unaligned)
    byte address, input and output maps at random non-overlapping line addresses.
    ``shape`` = ``(channels, out_channels, height, width)`` fixes the sizes instead.

    Returns ``(descriptor, weight_memory_bytes)``.
    """
    from nangua.hdl.kpu.descriptor import (make_layer, pack_activation, pack_batchnorm,
                                           pool_stride)
    from nangua.hdl.kpu.featuremap import fmap_lines

    k = kernel_size if kernel_size is not None else rng.choice([1, 3])
    dw = depthwise if depthwise is not None else rng.random() < 0.3
    if shape is None:
        channels = rng.randint(1, max_channels)
        out_channels = channels if dw else rng.randint(1, max_out_channels)
    else:
        channels, out_channels, height, width = shape
    pool = pool_type if pool_type is not None else rng.randint(0, 9)
    stride = pool_stride(pool)
    if shape is None:
        width = rng.randint(max(stride, min_width), max_width)
        height = rng.randint(stride, max_height)
    weights = bytes(rng.randrange(256)
                    for _ in range(out_channels * (1 if dw else channels) * k * k))
    bn = pack_batchnorm([(rng.randint(-2 ** 12, 2 ** 12), rng.randint(0, 15),
                          rng.randint(-2 ** 22, 2 ** 22)) for _ in range(out_channels)])
    starts = sorted(rng.randint(-2 ** 22, 2 ** 22) for _ in range(16))
    act = pack_activation([(x, rng.randint(-2 ** 15, 2 ** 15 - 1), rng.randint(0, 24),
                            rng.randrange(256)) for x in starts])
    memory = bytearray(rng.randrange(256) for _ in range(weight_bytes))
    w_addr = rng.randint(0, 40)
    memory[w_addr:w_addr + len(weights)] = weights
    bn_addr = (w_addr + len(weights) + 7) // 8 * 8
    memory[bn_addr:bn_addr + len(bn)] = bn
    act_addr = bn_addr + len(bn)
    memory[act_addr:act_addr + len(act)] = act
    if act_addr + len(act) > weight_bytes:
        raise ValueError("Weight memory too small for the random layer")
    in_lines = fmap_lines(channels, height, width)
    out_lines = fmap_lines(out_channels, height // stride, width // stride)
    lines = ram_bytes // 64
    if in_lines + out_lines > lines:
        raise ValueError("KPU RAM too small for the random layer")
    spare = lines - in_lines - out_lines
    first, gap = sorted(rng.randint(0, spare) for _ in range(2))
    if rng.random() < 0.5:
        src, dst = first, gap + in_lines
    else:
        dst, src = first, gap + out_lines
    d = make_layer(in_channels=channels, out_channels=out_channels, width=width, height=height,
                   kernel_size=k, depthwise=dw, pool_type=pool, src_addr=src, dst_addr=dst,
                   weights_addr=w_addr, bn_addr=bn_addr, act_addr=act_addr,
                   arg_x=rng.randint(-2 ** 14, 2 ** 14), shr_x=rng.randint(0, 15),
                   arg_w=rng.randint(-2 ** 14, 2 ** 14), shr_w=rng.randint(0, 15),
                   arg_add=rng.randint(-2 ** 24, 2 ** 24), pad_value=rng.randrange(256),
                   int_en=rng.randint(0, 1))
    return d, bytes(memory)
