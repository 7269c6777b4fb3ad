"""The ``predict`` loop: blocks of the input in, predictions out, in the input's order.

Offline (``predict_offline``) each block is parsed and scored in this process. Through an endpoint
(``predict_endpoint``) each block is cut into batches under the payload limit, at most ``concurrency`` of them in
flight, answered in any order and written in the input's; a batch the endpoint refuses (400) is parsed here to
find the rows it cannot score. Either way a row that cannot be scored stops the run with its row number and reason
before the output exists (``--on-bad-row fail``, the default: exit 2, no file), or is left out and reported
(``skip``). Memory is bounded by a block and the batches in flight, whatever the size of the file.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import ExitCode, PipelineError
from pipeline.progress import progress
from pipeline.scoring.offline import OfflineScorer, Scored
from pipeline.scoring.reading import (
    Block,
    Columns,
    CsvBlocks,
    Parsed,
    block_source,
    ids_of,
    match_columns,
    model_text,
    parse_block,
)
from pipeline.scoring.remote import EndpointScorer, Refused, TooLarge
from pipeline.scoring.request import ON_BAD_ROW
from pipeline.scoring.writing import PredictionWriter

SHOWN_BAD_ROWS = 10  # row numbers named in a message; every bad row is counted
PROGRESS_STEP = "predict"
BATCH_BYTES = 1024 * 1024  # a request's body through an endpoint (at most max_payload_mb)
NUMBER_START = frozenset(bytes([byte]) for byte in b"0123456789+-.")  # a body starting otherwise is checked here


@dataclass
class PredictReport:
    """What a ``predict`` run read, wrote and left out."""

    source: str
    output: str
    scored_by: str
    rows_read: int = 0
    rows_written: int = 0
    skipped: int = 0
    skipped_shown: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason), the first few
    seconds: float = 0.0
    versions: list[str] = field(default_factory=list)  # the endpoint versions that answered
    retried: int = 0  # requests sent again (throttling, server errors)

    def to_dict(self) -> dict[str, Any]:
        return {**{key: getattr(self, key) for key in ("source", "output", "scored_by", "rows_read", "rows_written",
                                                       "skipped", "seconds", "versions", "retried")},
                "skipped_rows": [{"row": row, "reason": reason} for row, reason in self.skipped_shown]}


class BadRows:
    """The rows the model cannot score: the run fails on the first block that has one (``fail``), or they are
    counted and the first few kept for the report (``skip``)."""

    def __init__(self, policy: str, source: str, report: PredictReport) -> None:
        if policy not in ON_BAD_ROW:
            raise PipelineError(f"--on-bad-row {policy!r}: expected one of {', '.join(ON_BAD_ROW)}")
        self.policy = policy
        self.source = source
        self.report = report

    def found(self, block: Block, parsed: Parsed) -> None:
        count = parsed.bad_count
        listed = [(block.first_row + index, reason) for index, reason in parsed.reasons.items()]
        if self.policy == "fail":
            row, reason = listed[0] if listed else (block.first_row + int(np.argmax(parsed.bad)), "not a number")
            others = [str(number) for number, _ in listed[1:SHOWN_BAD_ROWS]]
            more = f" (and {count - 1} more in {block_source(block)}: {', '.join(others)}" \
                   f"{', ...' if count - 1 > len(others) else ''})" if count > 1 else ""
            raise PipelineError(f"{self.source}: row {row} cannot be scored: {reason}{more}; nothing was written "
                                f"(--on-bad-row skip leaves such rows out)")
        self.report.skipped += count
        room = SHOWN_BAD_ROWS - len(self.report.skipped_shown)
        self.report.skipped_shown.extend(listed[:max(room, 0)])


def _progress(blocks: CsvBlocks, total_bytes: int | None) -> None:
    total = f" of {total_bytes / 1e6:,.1f}" if total_bytes else ""
    progress().report(PROGRESS_STEP, detail=f"{blocks.rows:,} rows, {blocks.bytes_read / 1e6:,.1f}{total} MB read")


def predict_offline(blocks: CsvBlocks, output: str, scorer: OfflineScorer, *, id_column: str | None = None,
                    probabilities: bool = False, on_bad_row: str = "fail",
                    total_bytes: int | None = None) -> PredictReport:
    """Score every row of ``blocks`` with a job's model in this process, into ``output``."""
    started = time.monotonic()
    report = PredictReport(blocks.source, output, f"training job {scorer.job.name}, in this process")
    bad = BadRows(on_bad_row, blocks.source, report)
    columns = match_columns(blocks.header, scorer.columns, id_column, blocks.source)
    with PredictionWriter(output, id_column) as writer:
        writer.header(scorer.classes if probabilities else None)
        for block in blocks:
            parsed = parse_block(block, columns)
            ids = ids_of(block, columns)
            rows = parsed.rows
            if parsed.bad.any():
                bad.found(block, parsed)
                keep = np.flatnonzero(~parsed.bad)
                rows, ids = rows[keep], [ids[index] for index in keep]
            if len(rows):
                scored = scorer.score(rows, probabilities)
                writer.write(ids, scored.labels, scored.probabilities)
            _progress(blocks, total_bytes)
        report.rows_read, report.rows_written = blocks.rows, writer.rows
    progress().done(PROGRESS_STEP, f"{report.rows_written:,} rows scored")
    report.seconds = round(time.monotonic() - started, 3)
    return report


@dataclass
class _Answered:
    """One batch's outcome, handed from a worker thread to the writer in the input's order."""

    part: Block
    ids: Sequence[str] | range
    scored: Scored | None
    bad: Parsed | None = None


def _batches(block: Block, columns: Columns, batch_bytes: int) -> Iterator[Block]:
    """The block in runs of rows whose body should stay under ``batch_bytes``, cut at line ends (a body found over
    the payload limit is halved before it is sent)."""
    if block.quoted:
        sample = block.cut(0, 200)
        per_row = max(1.0, len(model_text(sample, columns)) / len(sample))
        rows = max(1, int(batch_bytes * 0.9 / per_row))
        for start in range(0, len(block), rows):
            yield block.cut(start, start + rows)
        return
    data = block.data
    if not columns.same_as_file:  # the body is part of each line: take more of the file per batch
        head = data[:data.find(b"\n", min(len(data) - 1, 64 * 1024)) + 1]
        batch_bytes = int(batch_bytes * 0.9 * len(head) / max(1, len(model_text(Block(0, head), columns))))
    start, row = 0, block.first_row
    while start < len(data):
        end = len(data) if start + batch_bytes >= len(data) else data.rfind(b"\n", start, start + batch_bytes) + 1
        if end <= start:  # one line longer than a batch
            end = data.index(b"\n", start) + 1
        part = Block(row, data[start:end], False)
        row += len(part)
        start = end
        yield part


def _halves(part: Block) -> tuple[Block, Block]:
    middle = len(part) // 2
    return part.cut(0, middle), part.cut(middle, len(part))


def _joined(first: _Answered, second: _Answered) -> _Answered:
    if first.bad is not None and first.scored is None:
        return first  # a row to fail on: the run stops there
    if second.bad is not None and second.scored is None:
        return second
    a, b = first.scored, second.scored
    assert a is not None and b is not None
    probabilities = None if a.probabilities is None else [*a.probabilities, *b.probabilities]  # type: ignore[misc]
    bad = None
    if first.bad is not None or second.bad is not None:
        bad = _concat_bad(first, second)
    return _Answered(Block.of_lines(first.part.first_row, first.part.lines + second.part.lines, first.part.quoted),
                     [*first.ids, *second.ids], Scored([*a.labels, *b.labels], probabilities, a.classes or b.classes,
                                                       a.version or b.version), bad)


def _concat_bad(first: _Answered, second: _Answered) -> Parsed:
    parts = [(answered.part, answered.bad) for answered in (first, second)]
    masks = [bad.bad if bad is not None else np.zeros(len(part), dtype=bool) for part, bad in parts]
    reasons: dict[int, str] = dict(first.bad.reasons) if first.bad is not None else {}
    if second.bad is not None:
        reasons.update({index + len(first.part): reason for index, reason in second.bad.reasons.items()})
    return Parsed(np.empty((0, 0)), np.concatenate(masks), reasons)


def predict_endpoint(blocks: CsvBlocks, output: str, scorer: EndpointScorer, model: tuple[str, ...], *,
                     id_column: str | None = None, probabilities: bool = False, on_bad_row: str = "fail",
                     max_body_bytes: int = 6 * 1024 * 1024, batch_bytes: int = BATCH_BYTES, concurrency: int = 4,
                     classes: list[Any] | None = None, total_bytes: int | None = None) -> PredictReport:
    """Score every row of ``blocks`` through an endpoint whose model takes ``model``'s columns, into ``output``.
    ``classes`` are the model's, for the header of an input without rows."""
    started = time.monotonic()
    report = PredictReport(blocks.source, output, f"endpoint {scorer.endpoint_name}")
    bad = BadRows(on_bad_row, blocks.source, report)
    columns = match_columns(blocks.header, model, id_column, blocks.source)
    versions: set[str] = set()

    def score(part: Block) -> _Answered:
        body = model_text(part, columns)
        if len(body) > max_body_bytes and len(part) > 1:
            first, second = _halves(part)
            return _joined(score(first), score(second))
        where = f"rows {part.first_row:,}-{part.first_row + len(part) - 1:,}"
        if body[:1] not in NUMBER_START:  # the endpoint reads a first row of text as column names: look here first
            parsed = parse_block(part, columns)
            if parsed.bad.any():
                return without_bad_rows(part, parsed, where)
        try:
            return _Answered(part, ids_of(part, columns), scorer.send(body, len(part), where))
        except TooLarge as err:
            if len(part) == 1:
                raise PipelineError(f"{blocks.source}: row {part.first_row} alone is over the endpoint's payload "
                                    f"limit ({err})", ExitCode.FAILURE) from None
            first, second = _halves(part)
            return _joined(score(first), score(second))
        except Refused as refusal:
            parsed = parse_block(part, columns)
            if not parsed.bad.any():
                raise PipelineError(f"endpoint {scorer.endpoint_name!r} refused {where} ({refusal.message}), though "
                                    f"each is a row of numbers of the model's columns", ExitCode.FAILURE) from None
            return without_bad_rows(part, parsed, where)

    def without_bad_rows(part: Block, parsed: Parsed, where: str) -> _Answered:
        """A batch with rows the model cannot score: the run stops on them (``fail``), or the rest is sent again."""
        if on_bad_row == "fail":
            return _Answered(part, [], None, parsed)
        keep = ~parsed.bad
        ids = [value for value, kept in zip(ids_of(part, columns), keep) if kept]
        if not keep.any():
            return _Answered(part, [], Scored([], [] if probabilities else None), parsed)
        try:
            scored = scorer.send(model_text(part, columns, keep), int(keep.sum()), where)
        except Refused as again:
            raise PipelineError(f"endpoint {scorer.endpoint_name!r} refused {where} without the rows found bad "
                                f"({again.message})", ExitCode.FAILURE) from None
        return _Answered(part, ids, scored, parsed)

    def write(answered: _Answered, writer: PredictionWriter) -> None:
        if answered.bad is not None:
            bad.found(answered.part, answered.bad)  # raises under --on-bad-row fail
        scored = answered.scored
        assert scored is not None
        if scored.version:
            versions.add(scored.version)
        if not scored.labels:
            return
        if not writer.header_written:
            writer.header(scored.classes if probabilities else None)
        elif probabilities and list(scored.classes or []) != writer.classes:
            raise PipelineError(f"endpoint {scorer.endpoint_name!r} answered with classes {scored.classes}, earlier "
                                f"with {writer.classes}: its model changed during the run", ExitCode.FAILURE)
        writer.write(answered.ids, scored.labels, scored.probabilities)

    pending: deque[Future[_Answered]] = deque()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="predict")
    try:
        with PredictionWriter(output, id_column) as writer:
            for block in blocks:
                for part in _batches(block, columns, min(batch_bytes, max_body_bytes)):
                    pending.append(pool.submit(score, part))
                    while len(pending) > 2 * concurrency:
                        write(pending.popleft().result(), writer)
                _progress(blocks, total_bytes)
            while pending:
                write(pending.popleft().result(), writer)
            if not writer.header_written:  # no rows: the header alone
                writer.header(classes if probabilities else None)
            report.rows_read, report.rows_written = blocks.rows, writer.rows
    finally:
        scorer.stopped.set()  # a batch still retrying gives up rather than keep the run from ending
        pool.shutdown(wait=True, cancel_futures=True)
    progress().done(PROGRESS_STEP, f"{report.rows_written:,} rows scored")
    report.versions = sorted(versions)
    report.retried = scorer.retried
    report.seconds = round(time.monotonic() - started, 3)
    return report

