"""The one settings type: every choice a store is built with, from the CLI to the manifest and back.

Nested frozen dataclasses, one per part of the pipeline (encoder, text view, projection, index, scoring) and
``BuildSettings`` for the whole. Each checks its values when it is made and raises :class:`SettingsError` naming the
setting (``scoring.k``), with what was expected and what came; the CLI turns a setting's name into its flag. Defaults
are written here once. Scoring defaults depend on the projection (``ScoringSettings.defaults_for``): each projection's
cross-validated choice on Corel-5k's training images (BENCHMARKS.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Self, TypeVar

from annot.errors import AnnotError


class SettingsError(AnnotError):
    """A setting with a value it cannot take. ``setting`` is its dotted name (``scoring.k``)."""

    exit_code = 2  # a usage error, as the command line's own

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        self.detail = message
        super().__init__(f"{setting} {message}")


class KeywordPaths(StrEnum):
    """How a hierarchical keyword (Lightroom's ``Animals|Dog``, digiKam's ``Animals/Dog``) becomes a tag."""

    LEAF = "leaf"
    PATH = "path"


class TextView(StrEnum):
    """The text view Y (paper §3.2): mean tag vector (W2V), 0/1 tags (BV), or both side by side."""

    W2V = "w2v"
    BV = "bv"
    W2V_BV = "w2v+bv"


class Normalization(StrEnum):
    """Image-feature normalisation before CCA: none, unit rows, or signed square root then unit rows."""

    NONE = "none"
    L2 = "l2"
    POWER = "power"


class ProjectionKind(StrEnum):
    LINEAR = "linear-cca"
    KCCA = "kcca"


class TextKernel(StrEnum):
    LINEAR = "linear"
    RBF = "rbf"


class Space(StrEnum):
    """What a query is compared with: the training images' image projections U, their tags' V, or both."""

    IMAGE = "image"
    TEXT = "text"
    BOTH = "both"


class Score(StrEnum):
    """How CCA-KNN ranks words: Eq. 5, or Eq. 5 standardised per word against its usual score on the training images
    (leave-one-out) or on images the projection was fitted without (held out)."""

    EQ5 = "eq5"
    STANDARDIZED = "standardized"
    HELD_OUT = "standardized-held-out"


class FeatureDtype(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"


E = TypeVar("E", bound=StrEnum)
_BYTES = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([KMG]?B?)\s*")
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_bytes(text: str) -> int:
    """``4GB``, ``512M``, ``1.5G`` or a plain number of bytes; ValueError otherwise."""
    match = _BYTES.fullmatch(str(text).upper())
    if not match:
        raise ValueError(f"cannot read {text!r} as a size (examples: 4GB, 512MB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _choice(setting: str, value: object, kind: type[E]) -> E:
    try:
        return kind(value)  # type: ignore[arg-type]  # a wrong type is a ValueError too
    except ValueError:
        raise SettingsError(setting, f"must be one of {', '.join(k.value for k in kind)}, got {value!r}") from None


def _number(setting: str, value: object, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    """A finite real number within [low, high] (or (low, high] with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(setting, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise SettingsError(setting, f"must be a finite number, got {value}")
    if low is not None and (number <= low if low_open else number < low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise SettingsError(setting, f"must be {bound}" + (f" and <= {high:g}" if high is not None else "") + f", got {value}")
    if high is not None and number > high:
        raise SettingsError(setting, f"must be <= {high:g}" + (f" and >= {low:g}" if low is not None else "") + f", got {value}")
    return number


def _whole(setting: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise SettingsError(setting, f"must be a whole number >= {low}, got {value!r}")
    if value < low:
        raise SettingsError(setting, f"must be a whole number >= {low}, got {value}")
    return int(value)


def _path(value: object) -> Path | None:
    return None if value is None or value == "" else Path(str(value))


class _Settings:
    """What every settings part shares: ``replace`` with checks, and to / from plain dicts (the manifest's JSON)."""

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (checked as at construction)."""
        return replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, StrEnum):
                return value.value
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {k: plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "") -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"{prefix}{unknown[0]}", f"is not a setting (known: {', '.join(sorted(known))})")
        return cls(**data)


@dataclass(frozen=True)
class EncoderSettings(_Settings):
    """The image encoder (``annot.features.encoders``): a registered name, ``a+b`` or ``NAME@SIZE``; ``weights`` a
    state-dict file replacing a single encoder's weights."""

    name: str = "efficientnet-lite0-stages"
    weights: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SettingsError("encoder.name", f"must name an encoder, got {self.name!r}")
        object.__setattr__(self, "weights", _path(self.weights))


@dataclass(frozen=True)
class TextSettings(_Settings):
    """The text side: word vectors (``glove-50``, ``minilm`` or a file), the text view, and an optional vocabulary
    file that restricts and orders the words."""

    words: str = "glove-50"
    view: TextView = TextView.W2V_BV
    vocabulary: Path | None = None
    keywords: KeywordPaths = KeywordPaths.LEAF  # a photo's hierarchical keyword: its leaf word, or its whole path
    min_photos: int = 1  # words on fewer training images are left out

    def __post_init__(self) -> None:
        if not isinstance(self.words, str) or not self.words.strip():
            raise SettingsError("text.words", f"must name word vectors, got {self.words!r}")
        object.__setattr__(self, "view", _choice("text.view", self.view, TextView))
        object.__setattr__(self, "vocabulary", _path(self.vocabulary))
        object.__setattr__(self, "keywords", _choice("text.keywords", self.keywords, KeywordPaths))
        object.__setattr__(self, "min_photos", _whole("text.min_photos", self.min_photos, low=1))


LANDMARK_CHOICES = ("auto", "all")


@dataclass(frozen=True)
class ProjectionSettings(_Settings):
    """The shared space (paper §3.3-3.4). ``reg`` is each view's ridge relative to its mean variance;
    ``normalization`` defaults to the kind's cross-validated choice (linear CCA: none; KCCA: power); ``landmarks``
    (KCCA) is ``auto`` (exact up to 5,000 images, 2,000 Nyström landmarks above), ``all`` (exact) or a number;
    ``gamma_scale`` scales the χ² kernel's width 1 / (mean χ² distance)."""

    kind: ProjectionKind = ProjectionKind.LINEAR
    n_components: int | None = None
    reg: float = 0.3
    normalization: Normalization = None  # type: ignore[assignment]  # None: the projection kind's default
    landmarks: str | int = "auto"
    gamma_scale: float = 1.0
    text_kernel: TextKernel = TextKernel.LINEAR
    text_gamma_scale: float = 1.0
    space: Space = Space.IMAGE

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "kind", _choice("projection.kind", self.kind, ProjectionKind))
        if self.n_components is not None:
            set_(self, "n_components", _whole("projection.n_components", self.n_components, low=1))
        set_(self, "reg", _number("projection.reg", self.reg, low=0.0))
        if self.normalization is None:
            set_(self, "normalization", _NORMALIZATION_DEFAULTS[self.kind])
        set_(self, "normalization", _choice("projection.normalization", self.normalization, Normalization))
        set_(self, "landmarks", _landmarks(self.landmarks))
        set_(self, "gamma_scale", _number("projection.gamma_scale", self.gamma_scale, low=0.0, low_open=True))
        set_(self, "text_kernel", _choice("projection.text_kernel", self.text_kernel, TextKernel))
        set_(self, "text_gamma_scale", _number("projection.text_gamma_scale", self.text_gamma_scale, low=0.0,
                                               low_open=True))
        set_(self, "space", _choice("projection.space", self.space, Space))
        if self.text_kernel is not TextKernel.LINEAR and self.kind is not ProjectionKind.KCCA:
            raise SettingsError("projection.text_kernel", f"{self.text_kernel} needs the kcca projection (linear CCA's "
                                "views are linear)")

    @property
    def n_landmarks(self) -> int | str | None:
        """What ``KernelCCA(n_landmarks=...)`` takes: None for exact, "auto", or a count."""
        return None if self.landmarks == "all" else self.landmarks


_NORMALIZATION_DEFAULTS = {ProjectionKind.LINEAR: Normalization.NONE, ProjectionKind.KCCA: Normalization.POWER}


def _landmarks(value: object) -> str | int:
    if value in LANDMARK_CHOICES:
        return str(value)
    text = str(value)
    if isinstance(value, bool) or not (isinstance(value, int) or text.isdigit()):
        raise SettingsError("projection.landmarks", f"must be auto, all or a whole number >= 2, got {value!r}")
    return _whole("projection.landmarks", int(text), low=2)


@dataclass(frozen=True)
class ScoringSettings(_Settings):
    """How a query's tags are chosen (paper §3.4.1): ``method`` (a registered annotation method), ``n_tags`` per
    image, CCA-KNN's ``k`` nearest images per tag group, the temperature τ of exp(−D/τ), the word-frequency exponent
    α (0: Eq. 5 as printed), the candidate pool ``depth`` (0: all images up to 20,000) and the word ranking. With
    ``min_confidence`` an image gets every word (of its 10 best) whose calibrated confidence reaches it, not
    ``n_tags`` words (``"auto"``: the cut whose annotations had the best F1 on held-out training images)."""

    method: str = "cca-knn"
    n_tags: int = 5
    k: int = 5
    temperature: float = 0.1
    frequency_power: float = 0.375
    depth: int = 0
    score: Score = Score.EQ5
    min_confidence: float | str | None = None  # a probability, or "auto": the cut chosen on the training images

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.method, str) or not self.method:
            raise SettingsError("scoring.method", f"must name an annotation method, got {self.method!r}")
        set_(self, "n_tags", _whole("scoring.n_tags", self.n_tags, low=1))
        set_(self, "k", _whole("scoring.k", self.k, low=1))
        set_(self, "temperature", _number("scoring.temperature", self.temperature, low=0.0, low_open=True))
        set_(self, "frequency_power", _number("scoring.frequency_power", self.frequency_power, low=0.0, high=4.0))
        set_(self, "depth", _whole("scoring.depth", self.depth, low=0))
        set_(self, "score", _choice("scoring.score", self.score, Score))
        if self.min_confidence == "auto":
            pass
        elif isinstance(self.min_confidence, str):
            try:
                set_(self, "min_confidence", float(self.min_confidence))
            except ValueError:
                raise SettingsError("scoring.min_confidence", "must be a probability from 0 to 1, or auto (the cut "
                                    f"chosen on the training images), got {self.min_confidence!r}") from None
        if self.min_confidence not in (None, "auto"):
            set_(self, "min_confidence", _number("scoring.min_confidence", self.min_confidence, low=0.0, high=1.0))

    @classmethod
    def defaults_for(cls, projection: ProjectionKind | str) -> ScoringSettings:
        """The scoring defaults of a projection: the cross-validated choice on Corel-5k's training images with the
        default encoder (linear CCA: K 5, τ 0.1, α 0.375; KCCA: K 8, τ 0.05, α 0)."""
        return _SCORING_DEFAULTS[ProjectionKind(projection)]


_SCORING_DEFAULTS = {
    ProjectionKind.LINEAR: ScoringSettings(),
    ProjectionKind.KCCA: ScoringSettings(k=8, temperature=0.05, frequency_power=0.0),
}


@dataclass(frozen=True)
class IndexSettings(_Settings):
    """The image index: ``kind`` ``auto`` (exact Flat up to 50,000 images, else IVF sized to ``memory_budget``) or a
    FAISS index_factory string; an approximate index's search is widened until CCA-KNN's tags agree with exact
    search on ``tag_agreement`` of the words (0: speed first)."""

    kind: str = "auto"
    memory_budget: str = "4GB"
    tag_agreement: float = 0.9

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise SettingsError("index.kind", f"must be auto or a FAISS index_factory string, got {self.kind!r}")
        try:
            budget = parse_bytes(self.memory_budget)
        except ValueError as exc:
            raise SettingsError("index.memory_budget", str(exc)) from None
        if budget <= 0:
            raise SettingsError("index.memory_budget", f"must be more than 0 bytes, got {self.memory_budget!r}")
        object.__setattr__(self, "tag_agreement", _number("index.tag_agreement", self.tag_agreement, low=0.0, high=1.0))

    @property
    def budget_bytes(self) -> int:
        return parse_bytes(self.memory_budget)


@dataclass(frozen=True)
class BuildSettings(_Settings):
    """Everything ``annot index`` builds a store with. ``scoring`` defaults to the projection's own defaults
    (``ScoringSettings.defaults_for``). ``batch_size``, ``strict`` and ``ray`` say how the work runs, not what
    model it gives; they are kept too, so that a rebuild (``annot tune``) runs the same way."""

    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    text: TextSettings = field(default_factory=TextSettings)
    projection: ProjectionSettings = field(default_factory=ProjectionSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    scoring: ScoringSettings = None  # type: ignore[assignment]  # None: the projection's defaults
    feature_dtype: FeatureDtype = FeatureDtype.FLOAT32
    batch_size: int = 32
    strict: bool = False
    ray: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name, kind in (("encoder", EncoderSettings), ("text", TextSettings), ("projection", ProjectionSettings),
                           ("index", IndexSettings)):
            if not isinstance(getattr(self, name), kind):
                raise SettingsError(name, f"must be {kind.__name__}, got {type(getattr(self, name)).__name__}")
        if self.scoring is None:
            set_(self, "scoring", ScoringSettings.defaults_for(self.projection.kind))
        elif not isinstance(self.scoring, ScoringSettings):
            raise SettingsError("scoring", f"must be ScoringSettings, got {type(self.scoring).__name__}")
        set_(self, "feature_dtype", _choice("feature_dtype", self.feature_dtype, FeatureDtype))
        set_(self, "batch_size", _whole("batch_size", self.batch_size, low=1))
        if not isinstance(self.strict, bool):
            raise SettingsError("strict", f"must be true or false, got {self.strict!r}")
        if self.ray is not None and (not isinstance(self.ray, str) or not self.ray.strip()):
            raise SettingsError("ray", f"must be a Ray address or auto, got {self.ray!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_dict(), "text": self.text.to_dict(),
                "projection": self.projection.to_dict(), "index": self.index.to_dict(),
                "scoring": self.scoring.to_dict(), "feature_dtype": self.feature_dtype.value,
                "batch_size": self.batch_size, "strict": self.strict, "ray": self.ray}

    @classmethod
    def from_dict(cls, data: dict[str, Any], prefix: str = "") -> BuildSettings:
        parts: dict[str, type[_Settings]] = {"encoder": EncoderSettings, "text": TextSettings,
                                             "projection": ProjectionSettings, "index": IndexSettings,
                                             "scoring": ScoringSettings}
        unknown = sorted(set(data) - set(parts) - {"feature_dtype", "batch_size", "strict", "ray"})
        if unknown:
            raise SettingsError(unknown[0], "is not a setting")
        values: dict[str, Any] = {k: v for k, v in data.items() if k not in parts}
        for name, kind in parts.items():
            if name in data:
                if not isinstance(data[name], dict):
                    raise SettingsError(name, f"must be an object of settings, got {data[name]!r}")
                values[name] = kind.from_dict(data[name], f"{name}.")
        return cls(**values)


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def scoring_flags(*, method: str | None = None, n: int | None = None, k: int | None = None,
                  temperature: float | None = None, frequency_power: float | None = None, depth: int | None = None,
                  score: str | None = None, min_confidence: str | None = None) -> dict[str, Any]:
    """The scoring flags that were given, by their settings' names: the changes a command asks of the store's
    scoring settings (:meth:`annot.Store.scoring` applies them, checked)."""
    return _given(method=method, n_tags=n, k=k, temperature=temperature, frequency_power=frequency_power,
                  depth=depth, score=score, min_confidence=min_confidence)


def build_settings(*, encoder: str | None = None, weights: Path | None = None, words: str | None = None,
                   text: str | None = None, vocabulary: Path | None = None, keywords: str | None = None,
                   min_photos: int | None = None, projection: str | None = None,
                   components: int | None = None, reg: float | None = None, normalize: str | None = None,
                   landmarks: str | None = None, gamma_scale: float | None = None, text_kernel: str | None = None,
                   text_gamma_scale: float | None = None, space: str | None = None, index: str | None = None,
                   memory_budget: str | None = None, tag_agreement: float | None = None,
                   method: str | None = None, n: int | None = None, k: int | None = None,
                   temperature: float | None = None, frequency_power: float | None = None, depth: int | None = None,
                   score: str | None = None, feature_dtype: str | None = None, batch_size: int | None = None,
                   strict: bool | None = None, ray: str | None = None) -> BuildSettings:
    """Settings from flat, flag-like names (``encoder="fake", k=3, text="bv"``; what ``annot index`` builds with):
    every name not given takes the library's default (for the scoring names, the default of the projection given)."""

    projection_settings = ProjectionSettings(**_given(
        kind=projection, n_components=components, reg=reg, normalization=normalize, landmarks=landmarks,
        gamma_scale=gamma_scale, text_kernel=text_kernel, text_gamma_scale=text_gamma_scale, space=space))
    scoring = ScoringSettings.defaults_for(projection_settings.kind).replace(**scoring_flags(
        method=method, n=n, k=k, temperature=temperature, frequency_power=frequency_power, depth=depth, score=score))
    return BuildSettings(
        encoder=EncoderSettings(**_given(name=encoder, weights=weights)),
        text=TextSettings(**_given(words=words, view=text, vocabulary=vocabulary, keywords=keywords,
                                   min_photos=min_photos)),
        projection=projection_settings,
        index=IndexSettings(**_given(kind=index, memory_budget=memory_budget, tag_agreement=tag_agreement)),
        scoring=scoring,
        **_given(feature_dtype=feature_dtype, batch_size=batch_size, strict=strict, ray=ray),
    )


__all__ = [
    "BuildSettings",
    "EncoderSettings",
    "FeatureDtype",
    "IndexSettings",
    "KeywordPaths",
    "Normalization",
    "ProjectionKind",
    "ProjectionSettings",
    "Score",
    "ScoringSettings",
    "SettingsError",
    "Space",
    "TextKernel",
    "TextSettings",
    "TextView",
    "build_settings",
    "parse_bytes",
    "scoring_flags",
]
