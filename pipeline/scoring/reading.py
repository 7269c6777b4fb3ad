"""A CSV file to score, read in blocks of whole lines, its columns matched to a model's input schema by name.

Why blocks of lines rather than pandas' ``chunksize``: the same block is parsed here (to score it in this
process, or to find the rows an endpoint refused) and sent to an endpoint as it is -- each value's own text,
cut to the model's columns -- so the endpoint parses exactly the characters of the file and no float is
formatted again. A block ends at the end of a line. A row's number is its place among the data rows: 1 for
the first line after the header (empty lines are skipped and not counted, as pandas skips them).

A row the model cannot score -- a value that is not a number, empty, NaN or infinite, or a line with more or
fewer fields than the header -- is found here with the reason, by its row number.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from pipeline.errors import PipelineError

BLOCK_BYTES = 1024 * 1024  # read and parsed at a time; the memory a block takes while parsed is some 20 times this
REASONS_KEPT = 20  # reasons kept per block for the message; every bad row is counted


@dataclass(frozen=True)
class Columns:
    """Where the model's columns and the id column are in the file, by name."""

    header: tuple[str, ...]
    model: tuple[str, ...]  # the model's input columns, in its order
    positions: tuple[int, ...]  # each model column's place in the file
    id_column: str | None = None
    id_position: int | None = None

    @property
    def same_as_file(self) -> bool:
        """The file holds exactly the model's columns, in its order: its lines are the model's rows as they are."""
        return self.header == self.model

    @property
    def span(self) -> tuple[int, int] | None:
        """(first, end) when the model's columns are one run of adjacent fields in its order, e.g. an id before
        them and the label after: each line is cut at two commas."""
        first = self.positions[0]
        return (first, first + len(self.positions)) if self.positions == tuple(
            range(first, first + len(self.positions))) else None


def match_columns(header: Sequence[str], model: Sequence[str], id_column: str | None, source: str) -> Columns:
    """The model's columns found in ``header`` by name (other columns are ignored), or one line naming what is
    missing."""
    header = tuple(header)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise PipelineError(f"{source}: column {repeated[0]!r} appears more than once in the header; expected every "
                            f"column name once")
    missing = [name for name in model if name not in header]
    if missing:
        near = {name: other for name in missing for other in header
                if other not in model and other.strip().casefold() == name.strip().casefold()}
        hint = "; " + ", ".join(f"{other!r} is not {name!r}" for name, other in near.items()) if near else ""
        raise PipelineError(f"{source}: the model's column(s) {', '.join(map(repr, missing))} missing from the header "
                            f"(the model takes {', '.join(map(repr, model))}){hint}")
    if id_column is not None and id_column not in header:
        raise PipelineError(f"{source}: --id-column {id_column!r} is not in the header "
                            f"(columns: {', '.join(map(repr, header[:12]))}{', ...' if len(header) > 12 else ''})")
    return Columns(header, tuple(model), tuple(header.index(name) for name in model), id_column,
                   header.index(id_column) if id_column is not None else None)


class Block:
    """Whole lines of the file: ``data`` ends with a line end, holds no empty line, and uses ``\\n`` alone."""

    __slots__ = ("first_row", "data", "quoted", "_lines", "_rows")

    def __init__(self, first_row: int, data: bytes, quoted: bool | None = None) -> None:
        self.first_row = first_row  # the row number of the first line
        self.data = data
        self.quoted = b'"' in data if quoted is None else quoted  # a '"' appears: fields cannot be cut at commas
        self._lines: list[bytes] | None = None
        self._rows: int | None = None

    @classmethod
    def of_lines(cls, first_row: int, lines: list[bytes], quoted: bool) -> Block:
        block = cls(first_row, b"\n".join(lines) + b"\n" if lines else b"", quoted)
        block._lines = lines
        return block

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = self.data[:-1].split(b"\n") if self.data else []
        return self._lines

    def __len__(self) -> int:
        if self._rows is None:
            self._rows = len(self._lines) if self._lines is not None else self.data.count(b"\n")
        return self._rows

    def text(self, keep: np.ndarray | None = None) -> bytes:
        """The lines (all, or those ``keep`` marks) as they are in the file."""
        if keep is None:
            return self.data
        lines = self.lines
        return b"".join([lines[i] + b"\n" for i in np.flatnonzero(keep)])

    def cut(self, start: int, end: int) -> Block:
        """Lines ``start`` to ``end`` (not included) as a block of their own."""
        return Block.of_lines(self.first_row + start, self.lines[start:end], self.quoted)


class CsvBlocks:
    """A CSV file (any binary stream: a file, an S3 body) as its header and blocks of whole lines."""

    def __init__(self, stream: BinaryIO, source: str, block_bytes: int = BLOCK_BYTES) -> None:
        self.stream = stream
        self.source = source
        self.block_bytes = block_bytes
        self.bytes_read = 0
        self.rows = 0  # data rows handed out so far
        self._rest = b""
        self.header = self._read_header()

    def _read(self) -> bytes:
        data = self.stream.read(self.block_bytes)
        self.bytes_read += len(data)
        return data

    def _read_header(self) -> tuple[str, ...]:
        buffer = b""
        while b"\n" not in buffer:
            data = self._read()
            if not data:
                break
            buffer += data
        line, _, self._rest = buffer.partition(b"\n")
        if not line.strip(b"\r\n\t \xef\xbb\xbf"):
            raise PipelineError(f"{self.source} is empty: expected a CSV file with a header row")
        try:
            text = line.decode("utf-8-sig").rstrip("\r")
        except UnicodeDecodeError:
            raise PipelineError(f"{self.source}: the header is not UTF-8 text") from None
        names = next(csv.reader([text]))
        if any(not name.strip() for name in names):
            raise PipelineError(f"{self.source}: a column has no name in the header (a row index written without "
                                f"index=False, or a trailing comma); expected a name for every column")
        return tuple(names)

    def __iter__(self) -> Iterator[Block]:
        rest, self._rest = self._rest, b""
        while True:
            data = self._read()
            if data:
                buffer = rest + data
                cut = buffer.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: read on
                    rest = buffer
                    continue
                chunk, rest = buffer[:cut], buffer[cut:]
            else:
                chunk, rest = rest, b""
            block = self._block(chunk) if chunk else None
            if block is not None and block.data:
                self.rows += len(block)
                yield block
            if not data:
                return

    def _block(self, chunk: bytes) -> Block:
        if not chunk.endswith(b"\n"):  # the last line of a file without a final line end
            chunk += b"\n"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        if b"\n\n" in chunk or chunk.startswith(b"\n"):
            chunk = b"".join([line + b"\n" for line in chunk.split(b"\n") if line])
        block = Block(self.rows + 1, chunk)
        if block.quoted:
            for index, line in enumerate(block.lines):
                if line.count(b'"') % 2:
                    raise PipelineError(f"{self.source}: row {self.rows + index + 1} opens a quoted field it does not "
                                        f"close on the same line; a value spanning lines is not supported")
        return block


@dataclass
class Parsed:
    """A block's model columns as numbers, in the model's order, and the rows that cannot be scored."""

    rows: np.ndarray  # (rows, model columns) float64; a bad row's values are meaningless
    bad: np.ndarray  # bool per row: the model cannot score it
    reasons: dict[int, str] = field(default_factory=dict)  # row index in the block -> why (the first few)

    @property
    def bad_count(self) -> int:
        return int(self.bad.sum())


def field_counts(block: Block) -> np.ndarray:
    """The number of fields on each line (quoted commas counted right)."""
    if not block.quoted:
        raw = np.frombuffer(block.data, dtype=np.uint8)
        starts = np.flatnonzero(raw == 10)[:-1] + 1  # the block ends with a line end
        return np.add.reduceat(raw == 44, np.concatenate(([0], starts)), dtype=np.int64) + 1
    text = io.StringIO(block.data.decode("utf-8", errors="replace"))
    return np.fromiter((len(row) for row in csv.reader(text)), dtype=np.int64, count=len(block))


def parse_block(block: Block, columns: Columns) -> Parsed:
    """The model's columns of every row as float64; a row with the wrong number of fields or a value that is not a
    finite number is marked bad, with its reason."""
    width = len(columns.header)
    counts = field_counts(block)
    ragged = counts != width
    good_lines = ~ragged
    rows = np.full((len(block), len(columns.model)), np.nan)
    reasons: dict[int, str] = {}
    for index in np.flatnonzero(ragged)[:REASONS_KEPT]:
        reasons[int(index)] = f"it has {counts[index]} field(s), the header {width}"
    if good_lines.any():
        text = block.text(good_lines if ragged.any() else None)
        names = list(columns.header)
        try:
            frame = pd.read_csv(io.BytesIO(text), header=None, names=names, usecols=list(columns.model),
                                engine="c", skip_blank_lines=False)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            raise PipelineError(f"{block_source(block)}: not readable as CSV: {str(err).strip().splitlines()[0]}") \
                from None
        values, problems = _numbers(frame, columns.model)
        rows[good_lines] = values
        places = np.flatnonzero(good_lines)
        for local, reason in problems.items():
            if len(reasons) < REASONS_KEPT:
                reasons.setdefault(int(places[local]), reason)
    bad = ragged | ~np.isfinite(rows).all(axis=1)
    return Parsed(rows, bad, dict(sorted(reasons.items())))


def block_source(block: Block) -> str:
    return f"rows {block.first_row:,}-{block.first_row + len(block) - 1:,}"


def _numbers(frame: pd.DataFrame, model: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """The model's columns as float64, NaN where a value is not a finite number; the first reasons by row."""
    ordered = frame[list(model)]
    numeric = [is_numeric_dtype(dtype) and not is_bool_dtype(dtype) for dtype in ordered.dtypes]
    if all(numeric):  # nearly always: one copy, no loop
        matrix = ordered.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        matrix = np.empty((len(frame), len(model)), dtype=np.float64)
        for position, name in enumerate(model):
            column = frame[name]
            if numeric[position]:
                matrix[:, position] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            elif is_bool_dtype(column):
                matrix[:, position] = np.nan
            else:
                matrix[:, position] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64,
                                                                                       na_value=np.nan)
    reasons: dict[int, str] = {}
    with np.errstate(invalid="ignore"):
        not_finite = ~np.isfinite(matrix)
    for row in np.flatnonzero(not_finite.any(axis=1))[:REASONS_KEPT]:
        position = int(np.flatnonzero(not_finite[row])[0])
        name = model[position]
        value = frame[name].iloc[row]
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            reasons[int(row)] = f"column {name!r} is empty"
        elif isinstance(value, (bool, np.bool_)) or is_bool_dtype(frame[name]):
            reasons[int(row)] = f"column {name!r} is {str(value)!r}, not a number"
        elif isinstance(value, (int, float, np.number)):
            reasons[int(row)] = f"column {name!r} is {float(value)!r}, not a finite number"
        else:
            shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
            reasons[int(row)] = f"column {name!r} is {shown!r}, not a number"
    return matrix, reasons


def ids_of(block: Block, columns: Columns) -> Sequence[str] | range:
    """The id column's values as the file spells them (unquoted); the row numbers when there is none."""
    if columns.id_position is None:
        return range(block.first_row, block.first_row + len(block))
    position = columns.id_position
    if not block.quoted:
        out = []
        for line in block.lines:
            fields = line.split(b",", position + 1)
            out.append(fields[position].decode("utf-8", errors="replace") if len(fields) > position else "")
        return out
    text = io.StringIO(block.data.decode("utf-8", errors="replace"))
    return [row[position] if len(row) > position else "" for row in csv.reader(text)]


def model_text(block: Block, columns: Columns, keep: np.ndarray | None = None) -> bytes:
    """The model's columns of the rows (all, or those ``keep`` marks) as CSV lines in the model's order, each value
    as the file spells it: the body an endpoint parses. A line with more or fewer fields than the header is cut
    all the same: the endpoint refuses a body with it (400), and ``parse_block`` then finds it by number."""
    if columns.same_as_file and not block.quoted:
        return block.text(keep)
    lines = block.lines if keep is None else [block.lines[i] for i in np.flatnonzero(keep)]
    if not lines:
        return b""
    if block.quoted:
        text = io.StringIO(b"\n".join(lines).decode("utf-8", errors="replace"))
        cut_rows = [",".join(row[p] if p < len(row) else "" for p in columns.positions) for row in csv.reader(text)]
        return ("\n".join(cut_rows) + "\n").encode()
    span = columns.span
    if span is not None:  # one run of adjacent fields: two cuts per line, at C speed
        front, back = span[0], len(columns.header) - span[1]
        if not front:
            cut = [line.rsplit(b",", back)[0] for line in lines]
        elif not back:
            cut = [line.split(b",", front)[-1] for line in lines]
        else:
            cut = [line.split(b",", front)[-1].rsplit(b",", back)[0] for line in lines]
    else:
        positions = columns.positions
        cut = []
        for line in lines:
            fields = line.split(b",")
            cut.append(b",".join([fields[p] if p < len(fields) else b"" for p in positions]))
    return b"\n".join(cut) + b"\n"
