"""Live model quality: captured predictions merged with the labels that arrive later.

Like SageMaker's model-quality job, labels are matched to captured predictions by the
request's inference id (``prediction_keys`` in ``capture`` says how the rows of a
multi-row request are keyed). The accuracy comes with its Wilson interval, and a
*breach* is declared only when the whole interval lies below ``minimum_accuracy`` -- the
model is then worse than the minimum beyond reasonable doubt, not by the luck of a few
labels. Too few matched labels is its own result, never "no breach".
"""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.container.wilson import wilson_interval
from pipeline.errors import PipelineError
from pipeline.monitoring.baseline import class_key

BREACH = "breach"
NO_BREACH = "no_breach"
INSUFFICIENT_DATA = "insufficient_data"
LABEL_COLUMNS = ("inference_id", "label")


@dataclass(frozen=True)
class QualityReport:
    status: str  # breach, no_breach or insufficient_data
    reason: str
    matched: int
    unmatched_labels: int  # labels whose inference id has no captured prediction
    unlabelled_predictions: int  # captured predictions with no label (yet)
    correct: int
    accuracy: float | None
    interval_low: float | None
    interval_high: float | None
    confidence: float
    minimum_accuracy: float
    min_matched: int
    per_class_recall: dict[str, dict[str, float | int]]  # true class -> recall, correct, support
    unknown_label_classes: tuple[str, ...] = ()  # classes of matched labels the model neither predicts nor knows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_quality(
    predictions_by_id: Mapping[str, Any],
    labels_by_id: Mapping[str, Any],
    minimum_accuracy: float,
    min_matched: int = 30,
    confidence: float = 0.95,
    known_classes: Iterable[Any] = (),
) -> QualityReport:
    """Accuracy and per-class recall of the predictions that have a label.

    ``known_classes``: the classes the model was trained on (the baseline's). When no matched label is one of
    them nor of the classes the model predicted, the labels are spelled otherwise ("setosa" for the class 0)
    and say nothing of the model's accuracy: no verdict, never a breach at 0%. Without ``known_classes``
    every label is taken as a class."""
    if not 0.0 <= minimum_accuracy <= 1.0:
        raise ValueError(f"minimum_accuracy={minimum_accuracy!r}: expected a share between 0 and 1")
    if min_matched < 1:
        raise ValueError(f"min_matched={min_matched!r}: expected at least 1")
    matched_ids = [key for key in labels_by_id if key in predictions_by_id]
    truth = [class_key(labels_by_id[key]) for key in matched_ids]
    guess = [class_key(predictions_by_id[key]) for key in matched_ids]
    matched = len(matched_ids)
    correct = sum(t == g for t, g in zip(truth, guess))
    support = Counter(truth)
    hits = Counter(t for t, g in zip(truth, guess) if t == g)
    recall = {
        label: {"recall": hits[label] / count, "correct": hits[label], "support": count}
        for label, count in sorted(support.items())
    }
    # A label the model was trained on is a real class even when the model never predicts it (a model that
    # always answers 0 where the truth is 1 is a breach); one it neither knows nor predicts is spelled otherwise.
    model_classes = {class_key(c) for c in known_classes}
    if model_classes:
        model_classes |= {class_key(p) for p in predictions_by_id.values()}
    unknown = sorted(set(truth) - model_classes) if model_classes else []
    common = dict(
        matched=matched,
        unmatched_labels=len(labels_by_id) - matched,
        unlabelled_predictions=len(predictions_by_id) - matched,
        correct=correct,
        confidence=confidence,
        minimum_accuracy=minimum_accuracy,
        min_matched=min_matched,
        per_class_recall=recall,
        unknown_label_classes=tuple(unknown),
    )
    if matched == 0:
        return QualityReport(status=INSUFFICIENT_DATA, reason="no label matches a captured prediction",
                             accuracy=None, interval_low=None, interval_high=None, **common)
    if len(unknown) == len(support):  # not one matched label names a class of the model
        reason = (f"none of the {matched} labels that match a captured prediction names a class of the model: "
                  f"the labels say {_listed(unknown)}, the model's classes are {_listed(sorted(model_classes))}; "
                  f"write the labels as the training data's classes")
        return QualityReport(status=INSUFFICIENT_DATA, reason=reason, accuracy=None, interval_low=None,
                             interval_high=None, **common)
    low, high = wilson_interval(correct, matched, confidence)
    accuracy = correct / matched
    summary = (f"accuracy {accuracy:.3f} on {matched} labelled predictions, "
               f"{confidence:.0%} interval [{low:.3f}, {high:.3f}]")
    if matched < min_matched:
        status = INSUFFICIENT_DATA
        reason = f"only {matched} labels match captured predictions; at least {min_matched} needed"
    elif high < minimum_accuracy:
        status, reason = BREACH, f"{summary} lies wholly below minimum_accuracy {minimum_accuracy}"
    elif low < minimum_accuracy:
        status, reason = NO_BREACH, f"{summary} straddles minimum_accuracy {minimum_accuracy}: not a confident breach"
    else:
        status, reason = NO_BREACH, f"{summary} is at or above minimum_accuracy {minimum_accuracy}"
    return QualityReport(status=status, reason=reason, accuracy=accuracy, interval_low=low, interval_high=high,
                         **common)


def _listed(classes: list[str], at_most: int = 10) -> str:
    shown = ", ".join(classes[:at_most])
    return shown + (f" and {len(classes) - at_most} more" if len(classes) > at_most else "") if classes else "none"


def read_labels(path: Path) -> dict[str, str]:
    """A labels file: CSV with a header naming ``inference_id`` and ``label`` (other columns
    are ignored), UTF-8 with or without the byte order mark Excel writes. The same id twice with
    different labels is refused, naming both lines."""
    path = Path(path)
    name = repr(str(path))
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise PipelineError(f"labels file {name} not found: expected a CSV file with columns "
                            f"inference_id,label") from None
    except OSError as err:  # a directory, no permission
        raise PipelineError(f"labels file {name} cannot be read ({err.strerror or err}): expected a CSV file "
                            f"with columns inference_id,label") from None
    labels: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with handle:
        try:
            reader = csv.DictReader(handle)
            missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PipelineError(f"labels file {name} has no {missing[0]!r} column "
                                    f"(header: {','.join(reader.fieldnames or [])!r}); expected inference_id,label")
            for row in reader:
                line = reader.line_num
                key = (row.get("inference_id") or "").strip()
                label = (row.get("label") or "").strip()
                if not key or not label:
                    raise PipelineError(f"labels file {name} line {line}: empty inference_id or label")
                if key in labels and class_key(labels[key]) != class_key(label):
                    raise PipelineError(f"labels file {name} line {line}: inference id {key!r} has label {label!r} "
                                        f"but line {first_line[key]} gave it {labels[key]!r}")
                labels.setdefault(key, label)
                first_line.setdefault(key, line)
        except UnicodeDecodeError:
            raise PipelineError(f"labels file {name} is not UTF-8 text") from None
        except csv.Error as err:
            raise PipelineError(f"labels file {name} is not readable CSV: {err}") from None
    return labels
