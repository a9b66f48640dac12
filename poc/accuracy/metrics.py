"""The Ascend accuracy comparison's metrics, computed as msaccucmp computes them (CANN's ``msaccucmp.py compare``,
under ``msit debug compare``): both tensors flattened and cast to float32, each algorithm's value written with six
decimals, ``NaN`` where it cannot be computed, with the reason. The columns of its ``result_*.csv`` are here too."""
from __future__ import annotations

import numpy as np

# msaccucmp's built-in algorithms, in the order of its result columns
ALGORITHMS = ("CosineSimilarity", "MaxAbsoluteError", "AccumulatedRelativeError", "RelativeEuclideanDistance",
              "KullbackLeiblerDivergence", "StandardDeviation", "MeanAbsoluteError", "RootMeanSquareError",
              "MaxRelativeError", "MeanRelativeError")
# msit's result CSV: one row per compared tensor (Address: the NPU dump's device address, NaN for a CPU run;
# IsNpuOps: the tensor exists on the compared model's side only)
HEADER = ("Index", "OpType", "NPUDump", "DataType", "Address", "GroundTruth", "DataType", "TensorIndex", "Shape",
          *ALGORITHMS, "CompareFailReason", "IsNpuOps")
NAN = "NaN"
FLOAT_EPSILON = np.finfo(float).eps
MINIMUM_VALUE = 0.001  # StandardDeviation: a mean or deviation below this is written as 0
COSINE_FLOOR = 0.99  # msit's threshold: the first tensor below it is where the accuracy goes


def six(value) -> str:
    return f"{value:.6f}"


def _relative(target: np.ndarray, golden: np.ndarray) -> np.ndarray:
    """|target / golden - 1| where |golden| > eps, else 0 (msaccucmp's relative error, element by element)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(golden) > FLOAT_EPSILON, np.abs(target / golden - 1), 0)


def _kl_pdf(x: np.ndarray) -> np.ndarray:
    """msaccucmp's KL normalisation: min-max to [0, 1], floored at float32's eps (so that no value is 0)."""
    span = x.max() - x.min()
    x = (x - x.min()) / span if span != 0 else x
    return np.maximum(x, np.finfo(np.float32).eps)


def cosine_similarity(target, golden, scalar: bool = False) -> tuple[str, str]:
    if scalar:
        return six(1), "This tensor is scalar."
    t_norm, g_norm = np.linalg.norm(target), np.linalg.norm(golden)
    if t_norm <= FLOAT_EPSILON and g_norm < FLOAT_EPSILON:
        return "1.0", ""
    if t_norm ** 0.5 <= FLOAT_EPSILON:
        return NAN, "Cannot compare by Cosine Similarity. All the data is zero in the compared tensor."
    if g_norm ** 0.5 <= FLOAT_EPSILON:
        return NAN, "Cannot compare by Cosine Similarity. All the data is zero in the golden tensor."
    return six(min(float(((target / t_norm) * (golden / g_norm)).sum()), 1.0)), ""


def kullback_leibler(target, golden) -> tuple[str, str]:
    p, q = _kl_pdf(target), _kl_pdf(golden)
    p, q = p / p.sum(), q / q.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        result = float((p * np.log(p / q)).sum())
    if abs(result) < FLOAT_EPSILON:
        result = 0.0
    return six(result), ("Cannot compare by KL Divergence. The data contains 0 in the golden tensor."
                         if result == float("inf") else "")


def relative_euclidean(target, golden) -> str:
    golden_square = float((golden ** 2).sum())
    result = 0.0 if golden_square ** 0.5 <= FLOAT_EPSILON else float(((target - golden) ** 2).sum()) / golden_square
    return six(result ** 0.5)


def standard_deviation(target, golden) -> str:
    def small_to_zero(v: float) -> float:
        return 0.0 if abs(v) < MINIMUM_VALUE else v
    t_mean, t_std = small_to_zero(np.mean(target, dtype=np.float64)), small_to_zero(np.std(target, dtype=np.float64))
    g_mean, g_std = small_to_zero(np.mean(golden, dtype=np.float64)), small_to_zero(np.std(golden, dtype=np.float64))
    return f"({t_mean:.3f};{t_std:.3f}),({g_mean:.3f};{g_std:.3f})"


def compare(target: np.ndarray, golden: np.ndarray) -> tuple[dict[str, str], str]:
    """Every algorithm's value for two tensors of one size ({algorithm: text}), and the reasons any could not be
    computed, joined (msaccucmp's CompareFailReason)."""
    target_in, golden_in = target, golden
    target = np.asarray(target).astype(np.float32).ravel()
    golden = np.asarray(golden).astype(np.float32).ravel()
    if target.size != golden.size:
        return {a: NAN for a in ALGORITHMS}, (f"shape {list(np.shape(target_in))} against the golden tensor's "
                                              f"{list(np.shape(golden_in))}")
    if not target.size:
        return {a: NAN for a in ALGORITHMS}, "an empty tensor"
    for side, data in (("compared", target), ("golden", golden)):
        if not np.isfinite(data).all():
            return {a: NAN for a in ALGORITHMS}, f"the {side} tensor holds NaN or Inf"
    reasons = []
    cosine, why = cosine_similarity(target, golden, scalar=target.size == 1)
    reasons.append(why)
    kl, why = kullback_leibler(target, golden)
    reasons.append(why)
    diff = np.abs(target - golden)
    relative = _relative(target, golden)
    values = {
        "CosineSimilarity": cosine,
        "MaxAbsoluteError": six(diff.max()),
        "AccumulatedRelativeError": six(relative.sum()),
        "RelativeEuclideanDistance": relative_euclidean(target, golden),
        "KullbackLeiblerDivergence": kl,
        "StandardDeviation": standard_deviation(target, golden),
        "MeanAbsoluteError": six(diff.mean()),
        "RootMeanSquareError": six(np.sqrt(np.average(diff ** 2))),
        "MaxRelativeError": six(relative.max()),
        "MeanRelativeError": six(relative.mean()),
    }
    return values, " ".join(r for r in reasons if r)


def cosine_rows(rows: list[dict]) -> list[tuple[str, float]]:
    """(layer, cosine) of every row of a result CSV that has a cosine (rows the tool could not compare left out)."""
    found = []
    for r in rows:
        try:
            value = float(r.get("CosineSimilarity", ""))
        except ValueError:
            continue
        if np.isfinite(value):
            found.append((r.get("NPUDump") or r.get("GroundTruth") or r.get("Index", "?"), value))
    return found


def first_below(layers: list[tuple[str, float]], floor: float = COSINE_FLOOR) -> tuple[str, float] | None:
    """The first (layer, cosine) below ``floor``, in the model's order: where the accuracy starts to go."""
    return next(((name, v) for name, v in layers if v < floor), None)
