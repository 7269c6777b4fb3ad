"""The endpoint's contract: what its clients may send (the input schema) and receive (the class labels).

A deployment must not change either unannounced: a candidate trained without one of the serving
version's features answers every existing client 400, and one trained with other labels ("setosa"
where clients got 0) changes every answer. ``check_contract`` compares the candidate's contract with
the serving version's before anything is staged; a change holds the candidate (exit 3, the reason
naming what changed) unless the user allows it for that run (``--allow-contract-change``).

A job's input schema is in its manifest (recorded at training); its labels are recorded there too
(``output_schema``), and for a job made before that, read from its model (sha256-checked first).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.container import inference
from pipeline.gate.decision import ContractCheck, ContractStatus
from pipeline.training.jobs import TrainingJob
from pipeline.training.labels import label_of, label_order


@dataclass(frozen=True)
class Contract:
    columns: tuple[tuple[str, str], ...] | None  # (name, dtype) in the model's order; None: not recorded
    classes: tuple[tuple[str, str], ...]  # (kind, label): 0 and "0" are different labels to a client


def contract_of(job: TrainingJob) -> Contract:
    schema = job.input_schema
    columns = tuple((column["name"], column["dtype"]) for column in schema["columns"]) if schema else None
    recorded = job.manifest.get("output_schema")
    if recorded:
        classes = tuple((item["kind"], item["label"]) for item in recorded["classes"])
    else:  # a job made before labels were recorded: its model, checked against the store, knows them
        model = inference.model_fn(str(job.model_dir), job.model_sha256)
        classes = tuple(sorted({label_of(value) for value in getattr(model, "classes_", ())}, key=label_order))
    return Contract(columns, classes)


def check_contract(candidate: TrainingJob, serving_version: str | None, serving: TrainingJob | None, *,
                   allowed: bool = False) -> ContractCheck:
    """The candidate's contract against the serving version's: unchanged, changed (holds the candidate),
    allowed (changed, and the user said so for this run), or skipped (nothing serves)."""
    if serving is None or serving_version is None:
        return ContractCheck(status=ContractStatus.SKIPPED, reason="skipped: no serving version")
    changes = contract_changes(contract_of(serving), contract_of(candidate))
    if not changes:
        return ContractCheck(status=ContractStatus.UNCHANGED, serving_version=serving_version,
                             reason=f"the same inputs and labels as {serving_version}")
    described = "; ".join(changes)
    if allowed:
        return ContractCheck(status=ContractStatus.ALLOWED, serving_version=serving_version, changes=changes,
                             reason=f"changed from {serving_version}, allowed by --allow-contract-change: {described}")
    return ContractCheck(status=ContractStatus.CHANGED, serving_version=serving_version, changes=changes,
                         reason=f"the endpoint's contract would change from {serving_version}: {described} "
                                f"(existing clients would break; deploy it anyway with --allow-contract-change)")


def contract_changes(serving: Contract, candidate: Contract) -> list[str]:
    """What a client of the serving version would see change, one phrase each."""
    changes = []
    if serving.columns is not None and candidate.columns is not None and serving.columns != candidate.columns:
        old = [name for name, _ in serving.columns]
        new = [name for name, _ in candidate.columns]
        missing = [name for name in old if name not in new]
        added = [name for name in new if name not in old]
        if missing:
            changes.append(f"input features missing: {_names(missing)}")
        if added:
            changes.append(f"input features added: {_names(added)}")
        if not missing and not added and old != new:
            changes.append(f"input features reordered: {_names(old)} -> {_names(new)}")
        old_types, new_types = dict(serving.columns), dict(candidate.columns)
        retyped = [f"{name!r} {old_types[name]} -> {new_types[name]}" for name in old
                   if name in new_types and old_types[name] != new_types[name]]
        if retyped:
            changes.append(f"input features retyped: {', '.join(retyped)}")
    elif (serving.columns is None) != (candidate.columns is None):
        changes.append("input schema recorded for only one of them: named columns would be taken differently")
    if serving.classes != candidate.classes:
        old_labels, new_labels = set(serving.classes), set(candidate.classes)
        if {label for _, label in serving.classes} == {label for _, label in candidate.classes}:
            changes.append(f"labels retyped: {_labels(serving.classes)} -> {_labels(candidate.classes)}")
        else:
            removed = [item for item in serving.classes if item not in new_labels]
            added_labels = [item for item in candidate.classes if item not in old_labels]
            if removed:
                changes.append(f"labels removed: {_labels(removed)}")
            if added_labels:
                changes.append(f"labels added: {_labels(added_labels)}")
    return changes


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _labels(classes: Any) -> str:
    shown = [repr(label) if kind == "str" else label for kind, label in list(classes)[:8]]
    return "[" + ", ".join(shown) + (", ..." if len(list(classes)) > 8 else "") + "]"
