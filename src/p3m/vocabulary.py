"""The words p3m's commands, configs, data layouts and result files share, each defined once.

Test sets, the privacy-preserving training protocols, the official test strategies, obfuscation
methods, landmark schemes, P3M-CP modes, output kinds and the other closed sets of names are
enums here. Command-line choices are these enums, configuration validation checks against
them, and records are written with their values, so a name cannot drift between a command and
the library behind it. Registries that grow at run time (models: `p3m.models.list_models`,
face detectors) are not here: their names come from the registry.

Standard library only (it sits at the bottom with `p3m.errors`): every layer may use it, and
the CLI reads it when it starts.

    >>> TestSet.parse("rwp-636")
    <TestSet.RWP: 'RWP'>
    >>> Protocol.of(TrainingImages.B, TestSet.NP)
    <Protocol.BN: 'B:N'>
    >>> check_choice("gaussian", ObfuscationMethod, "obfuscation method")  # raises ConfigError
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from p3m.errors import ConfigError

__all__ = [
    "DATA_SETS",
    "DEVICE_HELP",
    "MAX_IMAGE_PIXELS",
    "Accumulate",
    "AnonymizeLayout",
    "BaselineMethod",
    "CPMode",
    "CPSourceFormat",
    "LandmarkScheme",
    "LrSchedule",
    "ObfuscationMethod",
    "OutputKind",
    "Protocol",
    "TestSet",
    "TestStrategy",
    "TrainingImages",
    "check_choice",
    "values",
]

EnumT = TypeVar("EnumT", bound=Enum)

DEVICE_HELP = "cpu, cuda, cuda:N or mps"
"""The devices a model runs on, as `p3m.models.resolve_device` takes them and every `--device` says."""

MAX_IMAGE_PIXELS = 160_000_000
"""Default cap on width x height of every image p3m decodes (decompression-bomb guard), shared by
the library (`p3m.io.DEFAULT_MAX_PIXELS`), the command line (`--max-image-pixels`) and the
service (`ServeConfig.max_image_pixels`). Above the largest single-shot photos (100-megapixel
phones and medium format, 11648 x 8736; 150-megapixel backs, 14204 x 10652), below Pillow's own
error limit (about 179 megapixels): a 14000 x 13000 blank PNG of a few kB is refused from its
header instead of being decoded into gigabytes."""


def values(enum: type[Enum]) -> tuple[str, ...]:
    """The string values of an enum of this module, in definition order."""
    return tuple(str(member.value) for member in enum)


def check_choice(value: object, enum: type[EnumT], what: str) -> EnumT:
    """`value` as a member of `enum`; ConfigError "unknown {what} ...; choose from ..." otherwise."""
    try:
        return enum(value)
    except ValueError:
        raise ConfigError(
            f"unknown {what} {value!r}; choose from {', '.join(values(enum))}"
        ) from None


# --------------------------------------------------------------------------- data


class TestSet(str, Enum):
    """A test set of the paper: P3M-500-P (blurred faces), P3M-500-NP (normal), RWP-636."""

    __test__ = False  # not a pytest test class despite its name

    P = "P3M-500-P"
    NP = "P3M-500-NP"
    RWP = "RWP"

    @property
    def label(self) -> str:
        """The name in the paper's tables (RWP-636 for RWP)."""
        return "RWP-636" if self is TestSet.RWP else self.value

    @property
    def images(self) -> TrainingImages | None:
        """The kind of faces its images show: B (blurred) for P3M-500-P, N for P3M-500-NP."""
        return {TestSet.P: TrainingImages.B, TestSet.NP: TrainingImages.N}.get(self)

    @classmethod
    def parse(cls, text: str) -> TestSet | None:
        """The set for any accepted spelling (any case; RWP, RWP-636, rwp636), else None."""
        key = text.strip().lower()
        for member in cls:
            if key in (member.value.lower(), member.label.lower(), member.label.lower().replace("-", "")):
                return member
        return None


DATA_SETS: tuple[str, ...] = ("train", *(test_set.value for test_set in TestSet))
"""Every set of the P3M-10k / RWP-636 layouts: the training set and the test sets."""


class TrainingImages(str, Enum):
    """What the training faces look like (config `data.protocol`, `--protocol`): blurred or normal."""

    B = "B"
    N = "N"

    @property
    def description(self) -> str:
        return "P3M-10k, faces blurred" if self is TrainingImages.B else "P3M-10k, normal images"


class Protocol(str, Enum):
    """The paper's privacy-preserving training protocols: training images x test images."""

    BB = "B:B"
    BN = "B:N"
    NN = "N:N"

    @property
    def training(self) -> TrainingImages:
        return TrainingImages(self.value[0])

    @property
    def test_set(self) -> TestSet:
        """B:B tests on P3M-500-P; B:N and N:N on P3M-500-NP."""
        return TestSet.P if self.value[2] == "B" else TestSet.NP

    @classmethod
    def parse(cls, text: str) -> Protocol | None:
        """The protocol for any accepted spelling (b:n, BN, B2N, b-n), else None."""
        compact = text.strip().upper().replace(":", "").replace("2", "").replace("-", "")
        try:
            return cls(f"{compact[0]}:{compact[1]}") if len(compact) == 2 else None
        except ValueError:
            return None

    @classmethod
    def of(cls, training: str | None, test_set: str) -> Protocol | None:
        """The protocol of a model trained on `training` images ('B'/'N') tested on `test_set`.

        None when it is none of the three (unknown training images, RWP, or N tested on blurred).
        """
        parsed = TestSet.parse(test_set) if isinstance(test_set, str) else None
        images = parsed.images if parsed is not None else None
        if training not in values(TrainingImages) or images is None:
            return None
        try:
            return cls(f"{training}:{images.value}")
        except ValueError:
            return None


# --------------------------------------------------------------------------- matting


class TestStrategy(str, Enum):
    """The official P3M-Net test procedures (`p3m.inference.strategies`)."""

    __test__ = False

    hybrid = "hybrid"
    resize = "resize"


class OutputKind(str, Enum):
    """What `p3m matte --save` writes per image: `<stem>_<kind>.png`."""

    alpha = "alpha"
    rgba = "rgba"
    foreground = "foreground"
    composite = "composite"
    trimap = "trimap"


# --------------------------------------------------------------------------- privacy


class ObfuscationMethod(str, Enum):
    """Face obfuscation of the P3M-10k recipe (paper Table 8): Gaussian blur, mosaic, zeros."""

    blur = "blur"
    mosaic = "mosaic"
    mask = "mask"


class LandmarkScheme(str, Enum):
    """Landmarks for the private-region polygon: MediaPipe Face Mesh, or dlib's 68 points."""

    mediapipe = "mediapipe"
    dlib68 = "dlib68"


class Verification(str, Enum):
    """Identity verification of each obfuscated face: dlib's face descriptor against the
    original's ("identity"), none, or "auto" (identity where dlib is installed)."""

    auto = "auto"
    identity = "identity"
    none = "none"


class DetectionPreset(str, Enum):
    """How hard the face search looks (`p3m.detection.DETECTION_PRESETS`): "thorough" (every
    orientation also searched upscaled; the default) or "standard" (upscaled upright only:
    the same faces >= 24 px on the synthetic groups, fewer turned faces under 24 px, about a
    third less CenterFace work)."""

    thorough = "thorough"
    standard = "standard"


class AnonymizeLayout(str, Enum):
    """Output layouts of `p3m anonymize`: a P3M-10k training set, P3M-500-P, or flat files."""

    train = "train"
    p3m_500_p = "P3M-500-P"
    flat = "flat"


# --------------------------------------------------------------------------- training


class CPMode(str, Enum):
    """P3M-CP (config `cp.mode`): off, image-level (ICP) or feature-level (FCP)."""

    none = "none"
    icp = "icp"
    fcp = "fcp"


class CPSourceFormat(str, Enum):
    """Where P3M-CP's source face masks come from: CelebAMask-HQ annotations or detection."""

    celebamask_hq = "celebamask-hq"
    faces = "faces"


class LrSchedule(str, Enum):
    """Learning-rate schedule (config `optim.schedule`): constant (official) or cosine."""

    constant = "constant"
    cosine = "cosine"


# --------------------------------------------------------------------------- evaluation


class Accumulate(str, Enum):
    """How metric means are summed: as the official eval.py (float32 running sum) or float64."""

    eval_py = "eval_py"
    float64 = "float64"


class BaselineMethod(str, Enum):
    """The trimap-based traditional baselines of the paper's tables (`p3m.evaluation.baselines`)."""

    cf = "cf"
    knn = "knn"
    lkm = "lkm"
    rw = "rw"
    sm = "sm"
    lbdm = "lbdm"
