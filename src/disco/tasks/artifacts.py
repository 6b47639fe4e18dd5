"""TF.js layers-model artifacts: topology, weight specs and the float32 weight bytes.

One immutable value (`ModelArtifacts`) that is always consistent: the specs' sizes add up to the
weight bytes. It reads and writes the TF.js "layers" format (model.json + weight files) and hands
out zero-copy float32 views of the tensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from disco.errors import DiscoError
from disco.tasks.atomic import atomic_write_bytes, atomic_write_json
from disco.weights import Shape, Weights, split_by_shapes

FLOAT32: Final = np.dtype("<f4")
SUPPORTED_DTYPE: Final = "float32"
FILE_NAME_MAX_LENGTH: Final = 255
# Keys of model.json / TF.js ModelArtifacts that ModelArtifacts models itself (never in `extra`).
RESERVED_KEYS: Final = frozenset({"modelTopology", "weightsManifest", "weightSpecs", "weightData"})


class ArtifactsError(DiscoError, ValueError):
    """Model files or weights that are malformed or do not match each other."""


def check_file_name(name: object, where: str) -> str:
    """A plain file name (no directory part, no '..', no hidden file) or ArtifactsError."""
    if not isinstance(name, str) or not name:
        raise ArtifactsError(f"{where}: must be a non-empty string")
    if (
        "/" in name
        or "\\" in name
        or "\0" in name
        or name.startswith(".")
        or len(name) > FILE_NAME_MAX_LENGTH
    ):
        raise ArtifactsError(f"{where}: {name!r} is not a safe file name")
    return name


@dataclass(frozen=True, slots=True)
class WeightSpec:
    """Name, shape and dtype of one weight tensor, in TF.js terms."""

    name: str
    shape: tuple[int, ...]
    dtype: str = SUPPORTED_DTYPE

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes taken in the weight data (float32)."""
        return self.size * FLOAT32.itemsize

    def to_json(self) -> dict[str, Any]:
        """The `{name, shape, dtype}` entry of a weights manifest."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, obj: object, where: str = "weightSpecs") -> WeightSpec:
        """Validate one manifest entry: string name, list of non-negative ints, float32."""
        if not isinstance(obj, Mapping):
            raise ArtifactsError(f"{where}: must be an object")
        name = obj.get("name")
        if not isinstance(name, str):
            raise ArtifactsError(f"{where}.name: must be a string")
        shape = obj.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ArtifactsError(f"{where}.shape: must be a list of non-negative integers")
        dtype = obj.get("dtype", SUPPORTED_DTYPE)
        if dtype != SUPPORTED_DTYPE:
            raise ArtifactsError(
                f"{where}.dtype: only {SUPPORTED_DTYPE!r} weights are supported, got {dtype!r}"
            )
        if obj.get("quantization") is not None:
            raise ArtifactsError(f"{where}.quantization: quantized weights are not supported")
        return cls(name=name, shape=tuple(shape), dtype=SUPPORTED_DTYPE)


def parse_weight_specs(obj: object, where: str = "weightSpecs") -> list[WeightSpec]:
    """Validate a JSON list of weight specs."""
    if not isinstance(obj, list):
        raise ArtifactsError(f"{where}: must be an array")
    return [WeightSpec.from_json(item, f"{where}[{i}]") for i, item in enumerate(obj)]


def _shape_text(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class ModelArtifacts:
    """A TF.js layers model: topology JSON, weight specs, weight bytes, other top-level keys.

    `extra` holds the other keys of model.json / TF.js ModelArtifacts (format, generatedBy,
    convertedBy, trainingConfig, userDefinedMetadata, ...), preserved as they came.
    """

    model_topology: dict[str, Any]
    weight_specs: list[WeightSpec]
    weight_data: bytes
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model_topology, dict):
            raise ArtifactsError("modelTopology: must be an object")
        if not isinstance(self.weight_data, bytes):
            object.__setattr__(self, "weight_data", bytes(self.weight_data))
        object.__setattr__(self, "weight_specs", list(self.weight_specs))
        reserved = RESERVED_KEYS.intersection(self.extra)
        if reserved:
            raise ArtifactsError(f"extra: reserved keys {sorted(reserved)} are modelled fields")
        for index, spec in enumerate(self.weight_specs):
            if spec.dtype != SUPPORTED_DTYPE:
                raise ArtifactsError(f"weightSpecs[{index}].dtype: must be {SUPPORTED_DTYPE!r}")
        expected = sum(spec.nbytes for spec in self.weight_specs)
        if expected != len(self.weight_data):
            raise ArtifactsError(
                f"weight data size mismatch: specs of {len(self.weight_specs)} tensors need "
                f"{expected} bytes, got {len(self.weight_data)} bytes"
            )

    # ----------------------------------------------------------------- weights

    @property
    def parameter_count(self) -> int:
        """Total number of float32 parameters."""
        return len(self.weight_data) // FLOAT32.itemsize

    def shapes(self) -> list[Shape]:
        """The tensors' shapes, in weight order."""
        return [spec.shape for spec in self.weight_specs]

    def weights(self) -> Weights:
        """Read-only float32 views into `weight_data`, one per tensor (no copy)."""
        flat = np.frombuffer(self.weight_data, dtype=FLOAT32, count=self.parameter_count)
        return split_by_shapes(flat, self.shapes())

    def with_weights(self, weights: Sequence[ArrayLike]) -> ModelArtifacts:
        """Same model with other weight values; shapes must match the specs exactly."""
        if len(weights) != len(self.weight_specs):
            raise ArtifactsError(
                f"expected {len(self.weight_specs)} weight tensors, got {len(weights)}"
            )
        chunks = []
        for index, (spec, tensor) in enumerate(zip(self.weight_specs, weights, strict=True)):
            array = np.asarray(tensor)
            if tuple(array.shape) != spec.shape:
                raise ArtifactsError(
                    f"weight {index} ({spec.name}): expected shape {_shape_text(spec.shape)}, "
                    f"got {_shape_text(array.shape)}"
                )
            if not (
                np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            ):
                raise ArtifactsError(f"weight {index} ({spec.name}): not numeric ({array.dtype})")
            contiguous = np.ascontiguousarray(array, dtype=FLOAT32)  # no copy when float32 already
            if contiguous.size:
                chunks.append(contiguous.data.cast("B"))
        # One copy in all (the join): a model of a gigabyte must not need three.
        return ModelArtifacts(self.model_topology, self.weight_specs, b"".join(chunks), self.extra)

    # ----------------------------------------------------------------- TF.js layers format

    def weights_manifest(self, weights_path: str = "weights.bin") -> list[dict[str, Any]]:
        """A single-shard manifest: every tensor in one file, in weight order."""
        check_file_name(weights_path, "weights path")
        return [{"paths": [weights_path], "weights": [s.to_json() for s in self.weight_specs]}]

    def to_layers_json(self, weights_path: str = "weights.bin") -> dict[str, Any]:
        """The TF.js layers model.json, its manifest naming one weight file `weights_path`."""
        return {
            "modelTopology": self.model_topology,
            **self.extra,
            "weightsManifest": self.weights_manifest(weights_path),
        }

    def to_tfjs_artifacts(self) -> dict[str, Any]:
        """TF.js `ModelArtifacts` shape (weightSpecs + weightData), e.g. for `tf.io.fromMemory`."""
        return {
            "modelTopology": self.model_topology,
            **self.extra,
            "weightSpecs": [s.to_json() for s in self.weight_specs],
            "weightData": self.weight_data,
        }

    @classmethod
    def from_layers(
        cls, model_json: object, weight_files: Mapping[str, bytes | bytearray | memoryview]
    ) -> ModelArtifacts:
        """Build from a parsed model.json and the contents of the files its manifest names.

        Each manifest group's paths are concatenated (sharded files) and must hold exactly the
        bytes its tensors need; groups follow each other in manifest order.
        """
        if not isinstance(model_json, Mapping):
            raise ArtifactsError("model.json: must be a JSON object")
        topology = model_json.get("modelTopology")
        if not isinstance(topology, dict):
            raise ArtifactsError("model.json: modelTopology must be an object")
        manifest = model_json.get("weightsManifest")
        if not isinstance(manifest, list):
            raise ArtifactsError("model.json: weightsManifest must be an array")
        specs: list[WeightSpec] = []
        data: list[bytes] = []
        for gi, group in enumerate(manifest):
            where = f"weightsManifest[{gi}]"
            if not isinstance(group, Mapping):
                raise ArtifactsError(f"{where}: must be an object")
            paths = group.get("paths")
            if not isinstance(paths, list) or not paths:
                raise ArtifactsError(f"{where}.paths: must be a non-empty array of file names")
            group_specs = parse_weight_specs(group.get("weights"), f"{where}.weights")
            group_data = []
            for pi, path in enumerate(paths):
                name = check_file_name(path, f"{where}.paths[{pi}]")
                if name not in weight_files:
                    raise ArtifactsError(f"{where}.paths[{pi}]: weight file {name!r} is missing")
                group_data.append(bytes(weight_files[name]))
            joined = b"".join(group_data)
            expected = sum(spec.nbytes for spec in group_specs)
            if len(joined) != expected:
                raise ArtifactsError(
                    f"{where}: manifest declares {expected} bytes for {len(group_specs)} "
                    f"tensors, weight files {paths} hold {len(joined)} bytes"
                )
            specs.extend(group_specs)
            data.append(joined)
        extra = {k: v for k, v in model_json.items() if k not in RESERVED_KEYS}
        return cls(topology, specs, b"".join(data), extra)


def manifest_paths(model_json: object) -> list[str]:
    """Every weight file a model.json names, validated as plain file names, in order."""
    if not isinstance(model_json, Mapping) or not isinstance(
        model_json.get("weightsManifest"), list
    ):
        raise ArtifactsError("model.json: weightsManifest must be an array")
    names: list[str] = []
    for gi, group in enumerate(model_json["weightsManifest"]):
        paths = group.get("paths") if isinstance(group, Mapping) else None
        if not isinstance(paths, list):
            raise ArtifactsError(f"weightsManifest[{gi}].paths: must be an array of file names")
        names.extend(
            check_file_name(p, f"weightsManifest[{gi}].paths[{pi}]") for pi, p in enumerate(paths)
        )
    return names


def read_layers_folder(folder: Path, model_file: str = "model.json") -> ModelArtifacts:
    """Load a TF.js layers model saved as files in `folder` (model.json + its weight files)."""
    try:
        model_json = json.loads((folder / model_file).read_bytes())
    except json.JSONDecodeError as error:
        raise ArtifactsError(f"{model_file}: not valid JSON ({error})") from None
    files = {}
    for name in manifest_paths(model_json):
        path = folder / name
        if not path.is_file():
            raise ArtifactsError(f"{model_file}: weight file {name!r} is missing")
        files[name] = path.read_bytes()
    return ModelArtifacts.from_layers(model_json, files)


def write_layers_folder(artifacts: ModelArtifacts, folder: Path) -> Path:
    """Write `model.json` and `weights.bin` into `folder` (atomically); the model.json path."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "weights.bin", artifacts.weight_data)
    atomic_write_json(folder / "model.json", artifacts.to_layers_json("weights.bin"))
    return folder / "model.json"
