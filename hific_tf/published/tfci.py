"""The reference client's `.tfci` files, written and read.

A `.tfci` file is a serialized tf.train.Example: feature "MD" holds the model name, features
chr(1), chr(2), ... the sender's outputs in sorted signature-key order (integers as
int64_list, floats as float_list, strings as bytes_list). Every tensor is a vector; the
receiver's inputs are filled in its own sorted key order, cast to the dtypes its signature
declares, and are not reshaped, as in the reference client.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from hific_tf.coding.bitstream import FormatError

TFCI_SUFFIX = ".tfci"
MODEL_FEATURE = "MD"


def feature_kind(dtype: tf.DType) -> str | None:
    """Which list of a tf.train.Feature holds values of `dtype`, or None if none can."""
    if dtype.is_integer:
        return "int64_list"
    if dtype.is_floating:
        return "float_list"
    if dtype == tf.string:
        return "bytes_list"
    return None


_NUMPY_KINDS = {"i": "int64_list", "u": "int64_list", "f": "float_list", "S": "bytes_list",
                "O": "bytes_list"}


def write_tfci(model_name: str, tensors: Sequence[np.ndarray | tf.Tensor]) -> bytes:
    """The bytes of a `.tfci` file holding `tensors` (vectors, in feature order) for
    `model_name`, laid out as the reference client writes them."""
    example = tf.train.Example()
    example.features.feature[MODEL_FEATURE].bytes_list.value.append(model_name.encode("ascii"))
    for number, tensor in enumerate(tensors, start=1):
        values = tensor.numpy() if isinstance(tensor, tf.Tensor) else np.asarray(tensor)
        if values.ndim != 1:
            raise ValueError(f"tensor {number} has shape {list(values.shape)}; a .tfci file "
                             "holds vectors only")
        kind = _NUMPY_KINDS.get(values.dtype.kind)
        if kind is None:
            raise ValueError(f"tensor {number} has dtype {values.dtype}, which a .tfci file "
                             "cannot hold")
        getattr(example.features.feature[chr(number)], kind).value.extend(values.tolist())
    return example.SerializeToString()


def read_tfci(data: bytes, dtypes: Sequence[tf.DType] | None = None,
              ) -> tuple[str, list[np.ndarray]]:
    """The model name and tensors of a `.tfci` file; FormatError if it is not one.

    With `dtypes`, there must be exactly that many tensors, each stored in the list that
    dtype uses, and they are returned cast to it (as the reference client does with the
    receiver's input dtypes); without, ints come back as int64, floats as float32, strings
    as object arrays of bytes.
    """
    example = tf.train.Example()
    try:
        example.ParseFromString(bytes(data))
    except DecodeError:
        raise FormatError("not a .tfci file: the data is not a serialized "
                          "tf.train.Example; pass a file written by the published "
                          "model's compress") from None
    features = example.features.feature
    names = features[MODEL_FEATURE].bytes_list.value if MODEL_FEATURE in features else []
    if len(names) != 1:
        raise FormatError(f"not a .tfci file: it has no model name (feature "
                          f"{MODEL_FEATURE!r}); pass a file written by the published "
                          "model's compress")
    try:
        model_name = names[0].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("not a .tfci file: its model name is not ASCII") from None
    count = len(features) - 1
    if sorted(features) != sorted([MODEL_FEATURE, *(chr(n) for n in range(1, count + 1))]):
        raise FormatError(f"the .tfci file is corrupt: its features are not chr(1) to "
                          f"chr({count}) besides {MODEL_FEATURE!r}")
    if dtypes is not None and len(dtypes) != count:
        raise FormatError(f"the .tfci file holds {count} tensors but the model "
                          f"{model_name} expects {len(dtypes)}; the file is corrupt")
    tensors = []
    for number in range(1, count + 1):
        feature = features[chr(number)]
        kind = feature.WhichOneof("kind")
        if dtypes is None:
            dtype = {"int64_list": tf.int64, "float_list": tf.float32,
                     "bytes_list": tf.string}.get(kind)
        else:
            dtype = tf.as_dtype(dtypes[number - 1])
            # An empty tensor leaves the feature with no list at all, as the reference writes it.
            kind = kind or feature_kind(dtype)
        if dtype is None or kind != feature_kind(dtype):
            raise FormatError(f"the .tfci file is corrupt: tensor {number} is stored as "
                              f"{kind or 'an empty feature'}, expected "
                              f"{feature_kind(dtype) if dtype else 'a value list'}")
        values = list(getattr(feature, kind).value)
        if dtype == tf.string:
            tensors.append(np.array(values, dtype=object))
            continue
        if dtype.is_integer and values and not dtype.min <= min(values) <= max(values) <= dtype.max:
            raise FormatError(f"the .tfci file is corrupt: tensor {number} holds values "
                              f"outside the range of {dtype.name}")
        tensors.append(np.array(values, dtype=dtype.as_numpy_dtype))
    return model_name, tensors
