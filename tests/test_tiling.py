"""Tiled coding writes the files and decodes the images of untiled coding, bit for bit."""

from __future__ import annotations

import itertools
import math
import struct

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.cli.common import parse_memory_size
from hific_tf.coding import bitstream, tiling
from hific_tf.coding.model import HiFiC
from hific_tf.configs import model_preset
from hific_tf.errors import UserError
from hific_tf.nn.networks import Encoder, Generator
from hific_tf.storage import zoo
from hific_tf.storage.images import read_image

from conftest import coding_parameters, make_tiny_model, run_cli


def code(model: HiFiC, image: np.ndarray, memory_budget: int | None = None,
         max_tile: int = 0) -> tuple[bytes, np.ndarray]:
    """The file and the decoded image under the given tile settings (then the defaults)."""
    model.set_memory_budget(memory_budget, max_tile)
    try:
        data = model.compress(image).numpy()
        return data, model.decompress(data).numpy()
    finally:
        model.set_memory_budget()


def assert_tiling_changes_nothing(model: HiFiC, image: np.ndarray, **tiles) -> None:
    whole_data, whole_image = code(model, image)
    tiled_data, tiled_image = code(model, image, **tiles)
    assert tiled_data == whole_data
    assert tiled_image.shape == image.shape
    np.testing.assert_array_equal(tiled_image, whole_image)


def test_halos_of_the_paper_model_match_a_count_by_hand():
    config = model_preset("hific")
    tiler = tiling.Tiler(Encoder(config), Generator(config), weight_bytes=0)
    # Latent p reads pixels 16p - 19 ... 16p + 49: the 7x7 conv, four stride-2 3x3 convs
    # (inputs 2o ... 2o + 2) and a 3x3 conv; so 2 latents before and 3 after.
    assert tiler.encoder_halo == (2, 3)
    # The head's conv and two per residual block, all 3x3.
    assert tiler.body_halo == (1 + 2 * 9, 1 + 2 * 9)
    # Pixels of latent p read latents p - 2 ... p + 1 through the transposed convs and 7x7.
    assert tiler.tail_halo == (2, 1)


def test_halos_are_the_networks_measured_reach():
    model = make_tiny_model()
    tiler = model.tiler
    stride = tiler.stride
    # E: the pixels whose values reach latent (8, 8), from the gradient.
    pixels = tf.Variable(tf.random.uniform([1, 512, 512, 3], seed=1))
    with tf.GradientTape() as tape:
        target = tf.reduce_sum(model.encoder(pixels)[0, 8, 8])
    rows = np.nonzero(np.any(tape.gradient(target, pixels).numpy()[0] != 0, axis=(1, 2)))[0]
    before, after = tiler.encoder_halo
    assert -(-(8 * stride - rows.min()) // stride) == before
    assert -(-(rows.max() - (9 * stride - 1)) // stride) == after
    # G: the output rows that change when one channel of one latent row changes (all
    # channels alike would vanish in G's first ChannelNorm).
    channels = model.config.latent_channels
    y_hat = tf.round(tf.random.normal([1, 24, 6, channels], seed=2) * 3)
    changed = y_hat + 4.0 * tf.one_hot(12, 24)[None, :, None, None] * tf.one_hot(0, channels)
    difference = model.generator(changed).numpy() != model.generator(y_hat).numpy()
    blocks = np.nonzero(np.any(difference[0], axis=(1, 2)))[0] // stride
    reach_before = tiler.tail_halo[0] + tiler.body_halo[0]
    reach_after = tiler.tail_halo[1] + tiler.body_halo[1]
    # Output block a reads latents a - before ... a + after, so latent 12 reaches blocks
    # 12 - after ... 12 + before, and the network's reach is exactly that.
    assert (blocks.min(), blocks.max()) == (12 - reach_after, 12 + reach_before)


@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (100, 37), (131, 77),
                                          (200, 300)])
@pytest.mark.parametrize("max_tile", [1, 2, 3])
def test_small_tiles_at_odd_sizes_change_nothing(tiny_model, rng, height, width, max_tile):
    # Tiles of 1-3 latents a side, smaller than every halo (E 2 and 3, G 3 + 2 and 3 + 1).
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert_tiling_changes_nothing(tiny_model, image, max_tile=max_tile)


def test_tile_sides_follow_the_budget(tiny_model):
    tiler = tiny_model.tiler
    rows, columns = tf.constant(32), tf.constant(48)  # a 768x512 photo

    def sides():
        return (*(int(side) for side in tiler.encoder_tile(rows, columns)),
                *(int(side) for side in tiler.generator_tile(rows, columns)))

    # The default budget holds a photo whole: one tile, the untiled networks.
    assert sides() == (32, 48, 32, 48)
    shapes = []
    for megabytes in (4000, 1000, 905, 100):
        tiny_model.set_memory_budget(megabytes * 2**20)
        shapes.append(sides())
    tiny_model.set_memory_budget()
    assert shapes[0] == (32, 48, 32, 48)
    areas = [(e_rows * e_columns, g_rows * g_columns)
             for e_rows, e_columns, g_rows, g_columns in shapes]
    assert all(a >= b for a, b in itertools.pairwise(areas))
    # 905 MiB leaves about 2 MiB above the weights and the runtime, where E's large tiles
    # on the whole photo need 5.
    assert areas[2][0] < 32 * 48
    # Below the weights and the runtime: the smallest tiles worth their halo, twice the
    # halo a side.
    halo = sum(tiler.encoder_halo)
    assert (shapes[-1][0] + halo) * (shapes[-1][1] + halo) <= (3 * halo) ** 2
    with pytest.raises(ValueError, match="must be positive"):
        tiny_model.set_memory_budget(0)


def _computed(rows: int, columns: int, tile_rows: int, tile_columns: int, halo: int) -> int:
    """Positions a grid of tiles computes, halos included (each seam adds one halo)."""
    row_count, column_count = -(-rows // tile_rows), -(-columns // tile_columns)
    return (rows + (row_count - 1) * halo) * (columns + (column_count - 1) * halo)


@pytest.mark.parametrize("available", [1e5, 5e5, 1e6, 3e6, 1e7, 2e7, 1e9])
def test_tiles_fit_the_budget_and_are_full_width_strips_where_those_cost_least(available):
    tiler = tiling.Tiler(Encoder(model_preset("hific")), Generator(model_preset("hific")),
                         weight_bytes=0)
    rows, columns, halo, per_position = 100, 160, 5, 1000.0  # E at 2560x1600
    # Tiles twice their halo a side run whatever the budget.
    available = max(available, per_position * (3 * halo) ** 2)
    tile = tiler._tile_shape(tf.constant(available, tf.float64), per_position, halo,
                             tf.constant(rows), tf.constant(columns))
    tile_rows, tile_columns = (int(side) for side in tile)
    if rows * columns * per_position <= available:
        assert (tile_rows, tile_columns) == (rows, columns)  # whole: no halo
        return
    haloed_rows = min(tile_rows + halo, rows)
    haloed_columns = columns if tile_columns == columns else tile_columns + halo
    assert haloed_rows * haloed_columns * per_position <= available
    # No worse than the square tiles of the same budget (the earlier rule) or a strip.
    square = int(math.sqrt(available / per_position)) - halo
    strip = int(available / per_position / columns) - halo
    computed = _computed(rows, columns, tile_rows, tile_columns, halo)
    assert computed <= _computed(rows, columns, square, square, halo)
    if strip >= 1:
        assert computed <= _computed(rows, columns, strip, columns, halo)


def test_a_portrait_image_gets_full_width_strips_a_landscape_one_full_height_tiles():
    tiler = tiling.Tiler(Encoder(model_preset("hific")), Generator(model_preset("hific")),
                         weight_bytes=0)
    available = tf.constant(6e6, tf.float64)  # 6000 positions at 1000 bytes, halo 5
    # 160 x 100: three strips (two seams of 100) beat two columns of two rows (a seam of
    # 160 and one of 105).
    tile = tiler._tile_shape(available, 1000.0, 5, tf.constant(160), tf.constant(100))
    assert [int(side) for side in tile] == [55, 100]
    # 60 x 160: two columns of full height (a seam of 60) beat two strips (a seam of 160).
    tile = tiler._tile_shape(available, 1000.0, 5, tf.constant(60), tf.constant(160))
    assert [int(side) for side in tile] == [60, 80]


def test_strips_of_h_s_give_the_whole_networks_values(tiny_model):
    hyperprior = tiny_model.hyperprior
    assert hyperprior.strip_halo == (1, 2)
    channels = tiny_model.config.hyper_channels
    for seed, (y_rows, y_columns) in enumerate([(13, 19), (16, 5), (1, 7), (29, 3)]):
        z_shape = [-(-y_rows // 4), -(-y_columns // 4)]
        z_hat = tf.round(tf.random.normal([1, *z_shape, channels], seed=seed) * 4)
        y_shape = tf.constant([y_rows, y_columns])
        whole = coding_parameters(hyperprior, z_hat, y_shape)
        for z_rows in (1, 2, 3):
            strips = coding_parameters(hyperprior, z_hat, y_shape, tf.constant(z_rows))
            for whole_value, strip_value in zip(whole, strips, strict=True):
                np.testing.assert_array_equal(strip_value.numpy(), whole_value.numpy())
    # The exactness check sees the same values: far too large a z fails it in strips too.
    huge = coding_parameters(hyperprior, z_hat * 1e12, y_shape, tf.constant(1))
    assert not bool(huge[2])


def test_y_coded_in_strips_of_rows_is_the_string_of_the_whole_latent(tiny_model):
    """The range coder appends each image's symbols in row-major order: strips of whole
    rows, top to bottom, write the whole latent's string and decode to its values."""
    from tensorflow_compression.python.ops import gen_ops

    coder = tiny_model.hyperprior.coder
    rng = np.random.default_rng(7)
    shape = (1, 11, 7, tiny_model.config.latent_channels)
    index = tf.constant(rng.integers(0, int(tf.size(coder.y_cdf_offset)), shape), tf.int32)
    mean = tf.constant(rng.normal(0, 3, shape), tf.float32)
    y = mean + tf.constant(rng.normal(0, 8, shape), tf.float32)
    # The whole-latent encode as written before streaming.
    symbols = tf.cast(tf.round(y - mean), tf.int32) - tf.gather(coder.y_cdf_offset, index)
    handle = gen_ops.create_range_encoder([1], coder.y_cdf)
    whole = gen_ops.entropy_encode_finalize(
        gen_ops.entropy_encode_index(handle, index, symbols)).numpy()
    y_hat = (tf.round(y - mean) + mean).numpy()
    for rows in (1, 2, 3, 5, 11):
        handle = coder.y_encoder([1])
        for top in range(0, shape[1], rows):
            strip = slice(top, top + rows)
            handle = coder.encode_y(handle, y[:, strip], mean[:, strip], index[:, strip])
        assert coder.finish_y(handle).numpy() == whole, rows
        handle, pieces = coder.y_decoder(tf.constant(whole)), []
        for top in range(0, shape[1], rows):
            strip = slice(top, top + rows)
            handle, piece = coder.decode_y(handle, mean[:, strip], index[:, strip])
            pieces.append(piece.numpy())
        assert bool(coder.finish_decoding_y(handle)[0])
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1), y_hat)


def test_hyperprior_in_strips_writes_and_reads_the_whole_latents_strings(tiny_model):
    hyperprior = tiny_model.hyperprior
    channels = tiny_model.config.latent_channels
    for seed, (rows, columns) in enumerate([(13, 19), (16, 5), (1, 7), (29, 3)]):
        y = tf.random.normal([1, rows, columns, channels], seed=seed) * 6
        y_shape = tf.constant([rows, columns])
        whole = hyperprior.compress(y)
        mean, _, _ = coding_parameters(hyperprior, whole.z_hat, y_shape)
        np.testing.assert_array_equal(whole.y_hat.numpy(),
                                      (tf.round(y - mean) + mean).numpy())
        decoded = hyperprior.decompress(whole.z_strings, whole.y_strings, y_shape)
        np.testing.assert_array_equal(decoded.numpy(), whole.y_hat.numpy())
        for z_rows in (1, 2, 3):
            z_rows = tf.constant(z_rows)
            strips = hyperprior.compress(y, z_rows)
            assert strips.z_strings.numpy() == whole.z_strings.numpy()
            assert strips.y_strings.numpy() == whole.y_strings.numpy()
            np.testing.assert_array_equal(strips.y_hat.numpy(), whole.y_hat.numpy())
            without = hyperprior.compress(y, z_rows, with_y_hat=False)
            assert without.y_hat is None
            assert without.y_strings.numpy() == whole.y_strings.numpy()
            decoded = hyperprior.decompress(whole.z_strings, whole.y_strings, y_shape, z_rows)
            np.testing.assert_array_equal(decoded.numpy(), whole.y_hat.numpy())


def test_the_exactness_check_refuses_in_strips_as_whole(tiny_model):
    # Large enough for h_s, small enough for z's symbols to be int32.
    y = tf.random.normal([1, 13, 6, tiny_model.config.latent_channels], seed=3) * 1e7
    messages = []
    for z_rows in (None, 1):
        # In a graph, as coding runs: eager assertions word their errors differently.
        compress = tf.function(lambda y, z_rows=z_rows: tiny_model.hyperprior.compress(
            y, None if z_rows is None else tf.constant(z_rows), with_y_hat=False).y_strings)
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            compress(y)
        messages.append(bitstream.check_message(error.value))
    assert messages[0] == messages[1]
    assert "hyper-latent is too large for exact integer arithmetic in h_s" in messages[0]


def test_damaged_files_are_refused_alike_in_strips_and_whole(tiny_model, rng):
    from hific_tf.codec import codec_from_model

    image = rng.integers(0, 256, size=(150, 70, 3), dtype=np.uint8)  # z: 3 x 2
    tiny_model.set_memory_budget(None, max_tile=1)
    assert int(tiny_model.tiler.hyper_rows(tf.constant(10), tf.constant(5))) == 1
    tiny_model.set_memory_budget()
    data = tiny_model.compress(image).numpy()
    header = struct.Struct(">4sB16sIIII")
    _, _, _, _, _, z_length, y_length = header.unpack_from(data)

    def rebuilt(body: bytes, height: int = 150, width: int = 70,
                lengths: tuple[int, int] = (z_length, y_length)) -> bytes:
        prefix = header.pack(b"\x89HFC", bitstream.VERSION, data[5:21], height, width,
                             *lengths) + body
        return prefix + bytes(tf.fingerprint(tf.constant([prefix])).numpy()[0])

    body = data[bitstream.HEADER_BYTES:-8]
    damaged = {"swapped": rebuilt(body[z_length:] + body[:z_length], lengths=(y_length,
                                                                              z_length)),
               "large": rebuilt(body, height=4000, width=4000),
               "truncated": data[:len(data) // 2]}
    for position in range(0, len(body), max(len(body) // 40, 1)):
        flipped = bytearray(body)
        flipped[position] ^= 0x5A
        damaged[f"byte {position}"] = rebuilt(bytes(flipped))  # checksum rewritten
    codec = codec_from_model(tiny_model)

    def outcome(file: bytes) -> str:
        try:
            decoded = codec.decompress(file)
        except bitstream.FormatError as error:
            assert "\n" not in str(error)
            return str(error)
        return f"decoded {decoded.tobytes().hex()[:32]}"

    whole = {name: outcome(file) for name, file in damaged.items()}
    assert "its coded data does not decode" in whole["swapped"]
    assert "z string is too short" in whole["large"]
    assert any("does not decode" in message for message in whole.values())
    tiny_model.set_memory_budget(None, max_tile=1)
    try:
        strips = {name: outcome(file) for name, file in damaged.items()}
    finally:
        tiny_model.set_memory_budget()
    assert strips == whole


@pytest.mark.parametrize("text,size", [("2GiB", 2 * 2**30), ("1.5GB", 1_500_000_000),
                                       ("512M", 512 * 2**20), ("3000000000", 3_000_000_000),
                                       (" 8 gib ", 8 * 2**30)])
def test_memory_sizes_parse(text, size):
    assert parse_memory_size(text) == size


@pytest.mark.parametrize("text,message", [("lots", "is not a memory size"),
                                          ("2 GiBs", "is not a memory size"),
                                          ("-1GiB", "is not a memory size"),
                                          ("0", "is below 1 MiB"), ("100KiB", "is below 1 MiB")])
def test_bad_memory_sizes_say_how_to_write_one(text, message):
    with pytest.raises(UserError, match=f"--memory_budget={text} {message}"):
        parse_memory_size(text)


@pytest.fixture(scope="module")
def bundled() -> HiFiC:
    name = zoo.SHIPPED_MODELS[0]
    if name not in zoo.bundled_names():
        pytest.skip(f"{name} is not bundled (make small-models writes it)")
    return zoo.load_bundled(name)


@pytest.mark.slow
def test_bundled_model_codes_val768_alike_in_tiles_smaller_than_its_halo(bundled, val768):
    assert len(val768) == 5
    assert bundled.tiler.body_halo[0] > 5
    for path in val768:
        assert_tiling_changes_nothing(bundled, read_image(path), max_tile=5)


@pytest.mark.slow
def test_bundled_model_codes_a_2560x1600_photo_alike_within_a_small_budget(bundled,
                                                                            train_photos):
    image = read_image(train_photos / "mate_Garden.jpg")
    assert image.shape == (1600, 2560, 3)
    budget = 980 * 2**20  # about 30 MiB above the weights, runtime and whole latents
    bundled.set_memory_budget(budget)
    tiles = (bundled.tiler.encoder_tile(tf.constant(100), tf.constant(160)),
             bundled.tiler.generator_tile(tf.constant(100), tf.constant(160)))
    bundled.set_memory_budget()
    areas = [int(rows) * int(columns) for rows, columns in tiles]
    assert max(areas) < 100 * 160, areas  # the budget tiles E and G
    assert_tiling_changes_nothing(bundled, image, memory_budget=budget)


@pytest.mark.slow
def test_saved_model_takes_a_budget_after_loading(tmp_path, tiny_model, rng):
    from hific_tf.codec import load_codec
    from hific_tf.storage.export import export_saved_model

    export_saved_model(tiny_model, tmp_path / "saved_model")
    codec = load_codec(tmp_path / "saved_model", memory_budget=2**30)
    image = rng.integers(0, 256, size=(150, 170, 3), dtype=np.uint8)
    whole_data, whole_image = code(tiny_model, image)
    tiling.configure(codec.functions.tile_settings, max_tile=2)
    assert int(codec.functions.tile_settings.memory_budget.numpy()) == tiling.DEFAULT_MEMORY_BUDGET
    assert codec.compress(image) == whole_data
    np.testing.assert_array_equal(codec.decompress(whole_data), whole_image)


@pytest.mark.slow
def test_a_bad_memory_budget_is_one_clean_error(tmp_path, photos):
    result = run_cli("compress", "--model=hific-small", "--memory_budget=2 gigs",
                     str(photos[0]), f"--output={tmp_path / 'out.hfc'}")
    assert result.returncode == 1
    assert result.stderr.strip() == ("hific-tf: error: --memory_budget=2 gigs is not a memory "
                                     "size; write it like 2GiB, 1.5GB or 512MiB")
