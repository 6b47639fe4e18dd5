"""The DISCO `Task` JSON as a typed, validated value.

Accepts what the real 2.1.1 client's `isTask` accepts (same required fields, same JSON types:
a bool is not a number, a numeric string is not a number), plus a few sanity bounds the server
relies on (positive epochs, integral peer counts...). Unknown fields are kept at every level and
served back unchanged by `Task.to_json()`.

`TrainingInformation` is the one owner of the settings the server and the clients act on:
read them through its typed fields and helpers (`min_participants`, `min_ready_peers`,
`strategy()`, `share_bound`, `clipping_radius`, `noise_scale`...), never from the raw JSON.
A field a task omits takes DISCO's default, defined here once. The aggregation strategy is
constructed while the task is validated, so a task whose aggregator settings cannot work is
refused with the field named, at `POST /tasks` as at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from disco.aggregation.errors import AggregationError
from disco.aggregation.secure import DEFAULT_MAX_SHARE_VALUE
from disco.aggregation.strategy import (
    AGGREGATOR_SPELLINGS,
    DEFAULT_CLIPPING_ITERATIONS,
    DEFAULT_TAU_PERCENTILE,
    AggregatorName,
    CenteredClipping,
    Mean,
    Median,
    Strategy,
    StrategyParameterError,
    TrimmedMean,
    aggregator_name,
)
from disco.errors import DiscoError
from disco.tasks.jsonvalue import json_problem
from disco.tasks.torch_model import TORCH_MODEL_FIELD

DEFAULT_MIN_PARTICIPANTS: Final = 2
"""Updates a federated round waits for when the task does not say (`minNbOfParticipants`)."""
DEFAULT_MINIMUM_READY_PEERS: Final = 3
"""Ready peers a decentralized round waits for when the task does not say; the 2.1.1 JS
client uses the same default (`minimumReadyPeers`)."""
TASK_ID_MAX_LENGTH: Final = 128
_TASK_ID_RE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class TaskValidationError(DiscoError, ValueError):
    """A task definition that is not acceptable; `str()` names every bad field."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.problems))


# --------------------------------------------------------------------------- JSON value types


def _number_validator(
    *,
    integral: bool = False,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Callable[[Any], int | float]:
    """A JS-like `typeof x === 'number'` check (no bool, no str) plus optional bounds."""

    def check(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PydanticCustomError("number_type", "must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("number_finite", "must be a finite number")
        if integral and not float(value).is_integer():
            raise PydanticCustomError("number_integral", "must be an integer")
        if gt is not None and not value > gt:
            raise PydanticCustomError("number_bound", "must be > {bound}", {"bound": gt})
        if ge is not None and not value >= ge:
            raise PydanticCustomError("number_bound", "must be >= {bound}", {"bound": ge})
        if lt is not None and not value < lt:
            raise PydanticCustomError("number_bound", "must be < {bound}", {"bound": lt})
        if le is not None and not value <= le:
            raise PydanticCustomError("number_bound", "must be <= {bound}", {"bound": le})
        return value

    return check


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "must be a string")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "must be a boolean")
    return value


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise PydanticCustomError("list_type", "must be an array of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise PydanticCustomError(
                "string_type", "item {index} must be a string", {"index": index}
            )
    return list(value)


def _string_or_number(value: Any) -> str | int | float:
    if isinstance(value, str):
        return value
    return _number_validator()(value)


def _task_id(value: Any) -> str:
    text = _string(value)
    if not text:
        raise PydanticCustomError("task_id", "must not be empty")
    if len(text) > TASK_ID_MAX_LENGTH:
        raise PydanticCustomError(
            "task_id", "must be at most {n} characters", {"n": TASK_ID_MAX_LENGTH}
        )
    if _TASK_ID_RE.fullmatch(text) is None:
        raise PydanticCustomError(
            "task_id",
            "must use only letters, digits, '-', '_' and '.', and not start with '.'",
        )
    return text


def _setting_error(problem: str, field: str | None = None) -> PydanticCustomError:
    """An error whose message is `problem`; `field` (dotted, relative to where pydantic reports
    the error) is appended to the reported path by `describe_validation_error`."""
    context = {"problem": problem} if field is None else {"problem": problem, "field": field}
    return PydanticCustomError("setting", "{problem}", context)


def _aggregator_spelling(value: Any) -> str:
    """A name the aggregation package knows (kept as spelled, so the task is served as sent)."""
    try:
        aggregator_name(value)
    except AggregationError as error:
        raise _setting_error(str(error)) from None
    return str(value)


def _strategy_parameter(build: Callable[[Any], Strategy]) -> Callable[[Any], int | float]:
    """A strategy parameter, checked by constructing the strategy it parameterizes."""

    def check(value: Any) -> int | float:
        try:
            build(value)
        except StrategyParameterError as error:
            raise _setting_error(error.problem) from None
        return value  # type: ignore[no-any-return]  # the constructor checked it is a number

    return check


_NUMBER_SCHEMA: Final = WithJsonSchema({"type": "number"})
_INTEGER_SCHEMA: Final = WithJsonSchema({"type": "number", "multipleOf": 1})

Number = Annotated[int | float, PlainValidator(_number_validator()), _NUMBER_SCHEMA]
PositiveNumber = Annotated[int | float, PlainValidator(_number_validator(gt=0)), _NUMBER_SCHEMA]
NonNegativeNumber = Annotated[int | float, PlainValidator(_number_validator(ge=0)), _NUMBER_SCHEMA]
Fraction = Annotated[int | float, PlainValidator(_number_validator(ge=0, lt=1)), _NUMBER_SCHEMA]
Quantile = Annotated[int | float, PlainValidator(_number_validator(ge=0, le=1)), _NUMBER_SCHEMA]
PositiveInteger = Annotated[
    int | float, PlainValidator(_number_validator(integral=True, ge=1)), _INTEGER_SCHEMA
]
JsonStr = Annotated[str, PlainValidator(_string), WithJsonSchema({"type": "string"})]
JsonBool = Annotated[bool, PlainValidator(_boolean), WithJsonSchema({"type": "boolean"})]
StrList = Annotated[
    list[str],
    PlainValidator(_string_list),
    WithJsonSchema({"type": "array", "items": {"type": "string"}}),
]
StrOrNumber = Annotated[
    str | int | float,
    PlainValidator(_string_or_number),
    WithJsonSchema({"type": ["string", "number"]}),
]
AggregatorSpelling = Annotated[
    str,
    PlainValidator(_aggregator_spelling),
    WithJsonSchema({"type": "string", "enum": sorted(AGGREGATOR_SPELLINGS)}),
]
TrimRatio = Annotated[
    int | float,
    PlainValidator(_strategy_parameter(lambda value: TrimmedMean(trim_ratio=value))),
    WithJsonSchema({"type": "number", "minimum": 0, "exclusiveMaximum": 0.5}),
]
ClippingIterations = Annotated[
    int | float,
    PlainValidator(_strategy_parameter(lambda value: CenteredClipping(iterations=value))),
    _INTEGER_SCHEMA,
]
TaskID = Annotated[
    str,
    PlainValidator(_task_id),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"}),
]


# --------------------------------------------------------------------------- models


class _JsonObject(BaseModel):
    """Base for every level: unknown keys kept, camelCase aliases, immutable once validated."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _absent_when_null(cls, data: Any) -> Any:
        """`null` for an optional field means absent (JS `undefined`), so it is never re-served."""
        if not isinstance(data, Mapping):
            raise PydanticCustomError("object_type", "must be a JSON object")
        optional = {
            info.alias or name for name, info in cls.model_fields.items() if not info.is_required()
        }
        return {k: v for k, v in data.items() if not (v is None and k in optional)}

    def to_json(self) -> dict[str, Any]:
        """The JSON object as received: known fields by their DISCO names, unknown ones as-is."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Summary(_JsonObject):
    """`displayInformation.summary`: both texts are required when present."""

    preview: JsonStr
    overview: JsonStr


class DataExample(_JsonObject):
    """One `{columnName, columnData}` cell; DISCO rejects any other key here."""

    model_config = ConfigDict(extra="forbid")

    column_name: JsonStr = Field(alias="columnName")
    column_data: StrOrNumber = Field(alias="columnData")


class DisplayInformation(_JsonObject):
    """Texts the DISCO web UI shows; only `taskTitle` is required by the client."""

    task_title: JsonStr = Field(alias="taskTitle")
    summary: Summary | None = None
    tradeoffs: JsonStr | None = None
    data_format_information: JsonStr | None = Field(default=None, alias="dataFormatInformation")
    data_example_text: JsonStr | None = Field(default=None, alias="dataExampleText")
    model: JsonStr | None = None
    data_example: list[DataExample] | None = Field(default=None, alias="dataExample")
    headers: StrList | None = None
    data_example_image: JsonStr | None = Field(default=None, alias="dataExampleImage")
    limitations: JsonStr | None = None


class ModelCompileData(_JsonObject):
    """Arguments of tfjs `model.compile` as the client applies them."""

    optimizer: JsonStr
    loss: JsonStr
    metrics: StrList


class Scheme(StrEnum):
    """Training schemes DISCO knows (the JS enum values)."""

    FEDERATED = "federated"
    DECENTRALIZED = "decentralized"
    LOCAL = "local"


class ByzantineOptions(_JsonObject):
    """`byzantineRobustAggregator` as an object: centered clipping with these parameters
    (each overrides the top-level `tauPercentile` / `clippingIterations`)."""

    tau_percentile: Quantile | None = Field(default=None, alias="tauPercentile")
    iterations: ClippingIterations | None = None


def _byzantine_setting(value: Any) -> bool | str | ByzantineOptions:
    """`byzantineRobustAggregator`: DISCO 2.1.1's boolean (true = centered clipping), an
    aggregator name, or a `ByzantineOptions` object."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _aggregator_spelling(value)
    if isinstance(value, Mapping):
        try:
            return ByzantineOptions.model_validate(value)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            message = _PLAIN_MESSAGES.get(first["type"], first["msg"])
            raise _setting_error(message, _path(first["loc"])) from None
    raise _setting_error(
        "must be a boolean, an aggregator name or an object {tauPercentile, iterations}"
    )


def _byzantine_json(value: bool | str | ByzantineOptions) -> object:
    return value.to_json() if isinstance(value, ByzantineOptions) else value


ByzantineSetting = Annotated[
    bool | str | ByzantineOptions,
    PlainValidator(_byzantine_setting),
    PlainSerializer(_byzantine_json),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "enum": sorted(AGGREGATOR_SPELLINGS)},
                {
                    "type": "object",
                    "properties": {
                        "tauPercentile": {"type": "number", "minimum": 0, "maximum": 1},
                        "iterations": {"type": "number", "multipleOf": 1, "minimum": 1},
                    },
                },
            ]
        }
    ),
]


class _SettingProblem(DiscoError):
    """A setting that cannot work, with its field path inside trainingInformation."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


OpenFraction = Annotated[
    int | float, PlainValidator(_number_validator(gt=0, lt=1)), _NUMBER_SCHEMA
]
MajorityFraction = Annotated[
    int | float, PlainValidator(_number_validator(gt=0.5, le=1)), _NUMBER_SCHEMA
]


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _string(value)
        if text not in choices:
            raise PydanticCustomError(
                "choice", "must be one of {choices}", {"choices": ", ".join(choices)}
            )
        return text

    return check


AggregationStrategyName = Annotated[
    str,
    PlainValidator(_one_of("mean", "byzantine", "secure")),
    WithJsonSchema({"enum": ["mean", "byzantine", "secure"]}),
]
OnExhaustedName = Annotated[
    str,
    PlainValidator(_one_of("stop", "warn")),
    WithJsonSchema({"enum": ["stop", "warn"]}),
]


class SecureAggregationSettings(_JsonObject):
    """`secureAggregation` of a federated task with `aggregationStrategy: "secure"`."""

    threshold: MajorityFraction | None = None  # fraction of a neighbourhood, default 2/3
    degree: PositiveInteger | None = None  # neighbours per participant, default: see secagg


class DifferentialPrivacySettings(_JsonObject):
    """Newer DISCO's `privacy.differentialPrivacy`: a total (ε, δ) target for client-side DP."""

    clipping_radius: PositiveNumber | None = Field(default=None, alias="clippingRadius")
    epsilon: PositiveNumber
    delta: OpenFraction
    rounds: PositiveInteger | None = None  # rounds ε covers; default: the client's plan


class PrivacyBudgetSettings(_JsonObject):
    """`privacy.budget`: the ε a participant may spend, and what happens when it is spent."""

    epsilon: PositiveNumber
    on_exhausted: OnExhaustedName | None = Field(default=None, alias="onExhausted")


class CentralPrivacySettings(_JsonObject):
    """`privacy.central`: server-side DP on the aggregate (clip each update, noise the sum)."""

    noise_multiplier: PositiveNumber = Field(alias="noiseMultiplier")
    clipping_radius: PositiveNumber = Field(alias="clippingRadius")
    adaptive_clipping: JsonBool | None = Field(default=None, alias="adaptiveClipping")
    target_quantile: Quantile | None = Field(default=None, alias="targetQuantile")
    clipping_learning_rate: PositiveNumber | None = Field(
        default=None, alias="clippingLearningRate"
    )
    count_noise: PositiveNumber | None = Field(default=None, alias="countNoise")

    @model_validator(mode="after")
    def _count_noise_fits(self) -> CentralPrivacySettings:
        """Adaptive clipping noises the count of unclipped updates with std countNoise; the
        update noise is raised to make up for it, which needs countNoise > noiseMultiplier/2."""
        if (
            self.adaptive_clipping
            and self.count_noise is not None
            and not self.count_noise > self.noise_multiplier / 2
        ):
            raise PydanticCustomError(
                "count_noise", "countNoise must be more than noiseMultiplier / 2"
            )
        return self


class PrivacySettings(_JsonObject):
    """`privacy`: client-side DP target, the account's δ and budget, central DP."""

    differential_privacy: DifferentialPrivacySettings | None = Field(
        default=None, alias="differentialPrivacy"
    )
    delta: OpenFraction | None = None
    budget: PrivacyBudgetSettings | None = None
    central: CentralPrivacySettings | None = None


class TrainingInformation(_JsonObject):
    """`trainingInformation`: hyper-parameters, data description and protocol knobs."""

    model_id: JsonStr = Field(alias="modelID")
    epochs: PositiveInteger
    round_duration: PositiveNumber = Field(alias="roundDuration")
    validation_split: Fraction = Field(alias="validationSplit")
    batch_size: PositiveInteger = Field(alias="batchSize")
    model_compile_data: ModelCompileData = Field(alias="modelCompileData")
    data_type: JsonStr = Field(alias="dataType")
    scheme: JsonStr
    preprocessing_functions: StrList | None = Field(default=None, alias="preprocessingFunctions")
    input_columns: StrList | None = Field(default=None, alias="inputColumns")
    output_columns: StrList | None = Field(default=None, alias="outputColumns")
    image_h: PositiveInteger | None = Field(default=None, alias="IMAGE_H")
    image_w: PositiveInteger | None = Field(default=None, alias="IMAGE_W")
    label_list: StrList | None = Field(default=None, alias="LABEL_LIST")
    model_url: JsonStr | None = Field(default=None, alias="modelURL")
    learning_rate: PositiveNumber | None = Field(default=None, alias="learningRate")
    noise_scale: NonNegativeNumber | None = Field(default=None, alias="noiseScale")
    clipping_radius: PositiveNumber | None = Field(default=None, alias="clippingRadius")
    decentralized_secure: JsonBool | None = Field(default=None, alias="decentralizedSecure")
    aggregator_spelling: AggregatorSpelling | None = Field(default=None, alias="aggregator")
    byzantine_robust_aggregator: ByzantineSetting | None = Field(
        default=None, alias="byzantineRobustAggregator"
    )
    tau_percentile: Quantile | None = Field(default=None, alias="tauPercentile")
    clipping_iterations: ClippingIterations | None = Field(
        default=None, alias="clippingIterations"
    )
    trim_ratio: TrimRatio | None = Field(default=None, alias="trimRatio")
    max_share_value: PositiveNumber | None = Field(default=None, alias="maxShareValue")
    minimum_ready_peers: PositiveInteger | None = Field(default=None, alias="minimumReadyPeers")
    min_nb_of_participants: PositiveInteger | None = Field(
        default=None, alias="minNbOfParticipants"
    )
    aggregation_strategy: AggregationStrategyName | None = Field(
        default=None, alias="aggregationStrategy"
    )
    secure_aggregation_settings: SecureAggregationSettings | None = Field(
        default=None, alias="secureAggregation"
    )
    privacy: PrivacySettings | None = None
    requires_enrollment: JsonBool | None = Field(default=None, alias="requiresEnrollment")

    @model_validator(mode="after")
    def _data_type_fields(self) -> TrainingInformation:
        """The client's `isTrainingInformation` needs these per data type."""
        if self.data_type == "tabular":
            if self.input_columns is None:
                raise PydanticCustomError(
                    "tabular", "inputColumns is required when dataType is 'tabular'"
                )
            if self.output_columns is None:
                raise PydanticCustomError(
                    "tabular", "outputColumns is required when dataType is 'tabular'"
                )
        if self.data_type == "image" and (self.image_h is None or self.image_w is None):
            raise PydanticCustomError(
                "image", "IMAGE_H and IMAGE_W are required when dataType is 'image'"
            )
        return self

    @model_validator(mode="after")
    def _strategy_works(self) -> TrainingInformation:
        """Construct the aggregation strategy now: a bad setting refuses the task, naming it."""
        try:
            self._build_strategy()
        except _SettingProblem as problem:
            raise _setting_error(problem.problem, problem.field) from None
        return self

    @model_validator(mode="after")
    def _exclusive_aggregation(self) -> TrainingInformation:
        """Secure aggregation hides each update from the server, so nothing that must inspect
        one update (a robust aggregator, server-side clipping) can run with it."""
        if self.aggregation_strategy != "secure":
            return self
        if self._aggregator_name() is not AggregatorName.MEAN:
            raise PydanticCustomError(
                "secure_robust",
                "aggregationStrategy 'secure' cannot be combined with a robust aggregator: the "
                "server only sees masked updates, which a robust aggregator would have to "
                "inspect one by one; choose one of the two",
            )
        if self.privacy is not None and self.privacy.central is not None:
            raise PydanticCustomError(
                "secure_central_dp",
                "aggregationStrategy 'secure' cannot be combined with privacy.central: the "
                "server cannot clip updates it only sees masked; use client-side differential "
                "privacy (privacy.differentialPrivacy) with secure aggregation",
            )
        return self

    @property
    def federated_secure(self) -> bool:
        """Federated rounds with secure aggregation (`aggregationStrategy: "secure"`)."""
        return (
            self.aggregation_strategy == "secure"
            and self.training_scheme is Scheme.FEDERATED
        )

    @property
    def training_scheme(self) -> Scheme | None:
        """The scheme, case-insensitively ('Federated' in DISCO's own defaults), or None."""
        try:
            return Scheme(self.scheme.lower())
        except ValueError:
            return None

    def min_participants_or(self, fallback: int | None) -> int:
        """`minNbOfParticipants`; when the task omits it, `fallback` (a server's own default
        quorum) or else DISCO's default."""
        if self.min_nb_of_participants is not None:
            return int(self.min_nb_of_participants)
        return DEFAULT_MIN_PARTICIPANTS if fallback is None else fallback

    @property
    def min_participants(self) -> int:
        """Updates a federated round waits for (`minNbOfParticipants`, default 2)."""
        return self.min_participants_or(None)

    @property
    def batches_per_round(self) -> int:
        """Local batches between two communication rounds (`roundDuration`, at least one)."""
        return max(1, int(self.round_duration))

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(IMAGE_H, IMAGE_W) of the model's input images; None when the task gives none."""
        if self.image_h is None or self.image_w is None:
            return None
        return int(self.image_h), int(self.image_w)

    @property
    def min_ready_peers(self) -> int:
        """Ready peers a decentralized round waits for (`minimumReadyPeers`, default 3)."""
        if self.minimum_ready_peers is None:
            return DEFAULT_MINIMUM_READY_PEERS
        return int(self.minimum_ready_peers)

    def strategy(self) -> Strategy:
        """The aggregation strategy the task asks for, with its parameters (FedAvg by default).

        `aggregator` names the method; `byzantineRobustAggregator` (true = centered clipping,
        a name, or an object of centered-clipping parameters) wins over an `aggregator` of
        "mean", and naming two different robust methods is refused. Centered clipping reads
        `tauPercentile` and `clippingIterations`, trimmed mean `trimRatio`.
        """
        return self._build_strategy()

    @property
    def aggregator(self) -> AggregatorName:
        """The aggregation method (see `strategy`)."""
        return self._aggregator_name()

    @property
    def clipping_quantile(self) -> float:
        """Quantile of update distances centered clipping uses as its radius."""
        return float(self._clipping_parameters()[0][1])

    @property
    def enrollment_required(self) -> bool:
        """Whether only holders of a participant token of the task may see or train it
        (`requiresEnrollment`, default false: open to anyone who reaches the server)."""
        return bool(self.requires_enrollment)

    @property
    def secure_aggregation(self) -> bool:
        """Whether decentralized peers exchange secret shares (`decentralizedSecure`, or newer
        DISCO's `aggregationStrategy: "secure"`)."""
        return bool(self.decentralized_secure) or self.aggregation_strategy == "secure"

    @property
    def share_bound(self) -> float:
        """Bound of the random shares in secure aggregation (`maxShareValue`, default 100)."""
        if self.max_share_value is None:
            return DEFAULT_MAX_SHARE_VALUE
        return float(self.max_share_value)

    def _aggregator_name(self) -> AggregatorName:
        requested = AggregatorName.MEAN
        if self.aggregator_spelling is not None:
            requested = aggregator_name(self.aggregator_spelling)
        robust = self.byzantine_robust_aggregator
        if robust is None or robust is False:
            return requested
        chosen = (
            aggregator_name(robust)
            if isinstance(robust, str)
            else AggregatorName.CENTERED_CLIPPING
        )
        if chosen is AggregatorName.MEAN:
            return requested
        if requested not in (AggregatorName.MEAN, chosen):
            raise _SettingProblem(
                "aggregator",
                f"{self.aggregator_spelling!r} conflicts with byzantineRobustAggregator "
                f"{chosen.value!r}",
            )
        return chosen

    def _clipping_parameters(self) -> tuple[tuple[str, float], tuple[str, int | float]]:
        """(field, value) of the clipping quantile and of the iterations, defaults included."""
        robust = self.byzantine_robust_aggregator
        options = robust if isinstance(robust, ByzantineOptions) else ByzantineOptions()
        tau: tuple[str, float] = ("tauPercentile", DEFAULT_TAU_PERCENTILE)
        if options.tau_percentile is not None:
            tau = ("byzantineRobustAggregator.tauPercentile", options.tau_percentile)
        elif self.tau_percentile is not None:
            tau = ("tauPercentile", self.tau_percentile)
        iterations: tuple[str, int | float] = ("clippingIterations", DEFAULT_CLIPPING_ITERATIONS)
        if options.iterations is not None:
            iterations = ("byzantineRobustAggregator.iterations", options.iterations)
        elif self.clipping_iterations is not None:
            iterations = ("clippingIterations", self.clipping_iterations)
        return tau, iterations

    def _build_strategy(self) -> Strategy:
        name = self._aggregator_name()
        if name is AggregatorName.MEDIAN:
            return Median()
        if name is AggregatorName.TRIMMED_MEAN:
            return TrimmedMean() if self.trim_ratio is None else TrimmedMean(self.trim_ratio)
        if name is AggregatorName.CENTERED_CLIPPING:
            (tau_field, tau), (iterations_field, iterations) = self._clipping_parameters()
            try:
                return CenteredClipping(tau_percentile=tau, iterations=int(iterations))
            except StrategyParameterError as error:
                field = tau_field if error.parameter == "tau_percentile" else iterations_field
                raise _SettingProblem(field, error.problem) from None
        return Mean()


class Digest(_JsonObject):
    """Optional `{algorithm, value}` checksum of the model."""

    algorithm: JsonStr
    value: JsonStr


class TorchModel(_JsonObject):
    """`torchModel` of a PyTorch-only task (see `disco.tasks.torch_model`): the factory that
    builds its module on each Python participant, and why other clients cannot train it."""

    factory: JsonStr
    reason: JsonStr


class Task(_JsonObject):
    """A DISCO task: identity, UI texts and training information."""

    task_id: TaskID = Field(alias="taskID")
    display_information: DisplayInformation = Field(alias="displayInformation")
    training_information: TrainingInformation = Field(alias="trainingInformation")
    digest: Digest | None = None
    torch_model: TorchModel | None = Field(default=None, alias=TORCH_MODEL_FIELD)


# --------------------------------------------------------------------------- parsing

_PLAIN_MESSAGES: Final = {
    "missing": "required",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be an array",
    "extra_forbidden": "unexpected field",
}


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "task"


def describe_validation_error(error: ValidationError, root: str = "") -> list[tuple[str, str]]:
    """(path, message) pairs with DISCO field names, e.g. ('trainingInformation.epochs', …)."""
    problems = []
    for item in error.errors(include_url=False):
        loc = ((root,) if root else ()) + tuple(item["loc"])
        field = (item.get("ctx") or {}).get("field")
        if isinstance(field, str):  # a setting error that names the field inside `loc`
            loc += tuple(field.split("."))
        problems.append((_path(loc), _PLAIN_MESSAGES.get(item["type"], item["msg"])))
    return problems


def parse_task(obj: object) -> Task:
    """Validate a decoded JSON value as a Task; TaskValidationError names each bad field."""
    if not isinstance(obj, Mapping):
        raise TaskValidationError([("task", "must be a JSON object")])
    problem = json_problem(dict(obj), "")
    if problem is not None:  # e.g. NaN or absurd nesting in an unknown field
        raise TaskValidationError([problem])
    try:
        return Task.model_validate(obj)
    except ValidationError as error:
        raise TaskValidationError(describe_validation_error(error)) from None
