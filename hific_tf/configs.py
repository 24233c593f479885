"""Architecture configurations: the one place where HiFiC's widths and sizes live.

The full-size numbers are those of the paper (see HIFIC_SPEC.md); small presets keep the
same topology at reduced width so that tests and CPU runs share the full model's code path.
"""

from __future__ import annotations

import dataclasses
import json
import math


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Widths and sizes of E, G, the hyperprior and D.

    The generator mirrors the encoder: its head and residual blocks use the encoder's last
    width, and its four upsampling stages use the encoder's other widths in reverse.
    """

    latent_channels: int = 220  # C_y
    encoder_channels: tuple[int, ...] = (60, 120, 240, 480, 960)
    residual_blocks: int = 9
    hyper_channels: int = 320
    discriminator_condition_channels: int = 12
    discriminator_channels: tuple[int, ...] = (64, 128, 256, 512)
    num_scales: int = 64
    scale_min: float = 0.11
    scale_max: float = 256.0
    norm_epsilon: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_channels", tuple(self.encoder_channels))
        object.__setattr__(self, "discriminator_channels", tuple(self.discriminator_channels))
        if len(self.encoder_channels) != 5:
            raise ValueError(
                "encoder_channels needs 5 widths (a 7x7 conv and four stride-2 convs), "
                f"got {self.encoder_channels}")
        if len(self.discriminator_channels) != 4:
            raise ValueError(
                f"discriminator_channels needs 4 widths, got {self.discriminator_channels}")
        for name in ("latent_channels", "residual_blocks", "hyper_channels",
                     "discriminator_condition_channels", "num_scales"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.scale_min < self.scale_max:
            raise ValueError("need 0 < scale_min < scale_max")

    @property
    def generator_channels(self) -> tuple[int, ...]:
        """Head width followed by the four upsampling widths."""
        return (self.encoder_channels[-1], *reversed(self.encoder_channels[:-1]))

    @property
    def latent_stride(self) -> int:
        """Downsampling factor from the image to y (16)."""
        return 2 ** (len(self.encoder_channels) - 1)

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this so that z (H/64) is whole."""
        return self.latent_stride * 4

    def scale_table(self) -> list[float]:
        """The Gaussian conditional's scales: exp(linspace(ln min, ln max, num_scales))."""
        lo, hi = math.log(self.scale_min), math.log(self.scale_max)
        step = (hi - lo) / max(self.num_scales - 1, 1)
        return [math.exp(lo + i * step) for i in range(self.num_scales)]

    def to_json(self) -> str:
        """Canonical JSON, used in checkpoints and in the model identifier."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of to_json; unknown keys are an error."""
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**fields)


MODEL_PRESETS: dict[str, ModelConfig] = {
    # The paper's model: E 7.42 M, G 156.77 M, hyperprior 17.28 M, D 2.80 M parameters.
    "hific": ModelConfig(),
    # Same topology at a width that codes a photo in well under a second on a laptop CPU;
    # for tests and for demonstrating the pipeline.
    "tiny": ModelConfig(
        latent_channels=16,
        encoder_channels=(8, 16, 24, 32, 48),
        residual_blocks=1,
        hyper_channels=24,
        discriminator_condition_channels=4,
        discriminator_channels=(8, 16, 32, 32),
    ),
}


def model_preset(name: str) -> ModelConfig:
    """Returns a named preset, or raises ValueError listing the known names."""
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; choose one of {', '.join(MODEL_PRESETS)}"
        ) from None
