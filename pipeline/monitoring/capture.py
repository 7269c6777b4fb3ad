"""Captured requests: one definition of the record, for the writer and the reader.

A record has the shape of SageMaker's data capture (one JSON object per line)::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "5.1,3.5,1.4,0.2", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "{\\"predictions\\": [0]}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "9f1c...", "inferenceId": "9f1c...",
                       "inferenceTime": "2026-11-30T10:15:02.123Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV`` or ``JSON`` when the body is UTF-8 text of that content type and
``BASE64`` otherwise, as SageMaker does. Deviation: SageMaker writes ``inferenceId`` only
when the client sent one; here every request gets an id (returned to the client in
``X-Inference-Id``): the client's ``InferenceId`` when it sent one (``inferenceId``, the endpoint's own id as
``eventId``), else the endpoint's, written as both ``eventId`` and ``inferenceId``.

Files: ``<capture dir>/<version>/YYYY/MM/DD/HH/<writer>.jsonl`` (SageMaker's
``yyyy/mm/dd/hh`` layout, with the model version in place of the variant), UTC hours of
``inferenceTime``. Each writer (endpoint worker) appends whole lines to its own file; a
file's last line may be cut short by a crash, and the reader counts it instead of failing.
``.jsonl.gz`` files (closed hours compressed to save disk) are read as well.
"""
from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

CSV = "text/csv"
JSON = "application/json"
EVENT_VERSION = "0"
SUFFIXES = (".jsonl", ".jsonl.gz")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def format_time(when: datetime) -> str:
    """UTC with milliseconds and a ``Z``, as SageMaker's ``inferenceTime``."""
    if when.tzinfo is None:
        raise ValueError("inference time must be timezone-aware")
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _payload(body: bytes | str, content_type: str | None, mode: str) -> dict[str, str]:
    media_type = _media_type(content_type)
    raw = body.encode() if isinstance(body, str) else bytes(body)
    encoding = {CSV: "CSV", JSON: "JSON"}.get(media_type)
    data: str
    if encoding is not None:
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            encoding = None
    if encoding is None:
        encoding, data = "BASE64", base64.b64encode(raw).decode("ascii")
    return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


def capture_record(
    *,
    inference_id: str,
    input_body: bytes | str,
    input_content_type: str | None,
    output_body: bytes | str | None = None,
    output_content_type: str | None = None,
    inference_time: datetime | None = None,
) -> dict[str, Any]:
    """One captured request (and its answer, when there was one) as a JSON-ready dict."""
    if not inference_id:
        raise ValueError("a captured request needs its inference id")
    capture: dict[str, Any] = {"endpointInput": _payload(input_body, input_content_type, "INPUT")}
    if output_body is not None:
        capture["endpointOutput"] = _payload(output_body, output_content_type, "OUTPUT")
    when = inference_time or datetime.now(UTC)
    return {
        "captureData": capture,
        "eventMetadata": {"eventId": inference_id, "inferenceId": inference_id, "inferenceTime": format_time(when)},
        "eventVersion": EVENT_VERSION,
    }


def capture_line(record: dict[str, Any]) -> bytes:
    """A record as one line of a ``.jsonl`` file: write it with a single ``write`` call."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def capture_hour_directory(capture_dir: Path, version: str, when: datetime) -> Path:
    """Where the records of ``version`` captured in the hour of ``when`` (UTC) go."""
    if not version or "/" in version or version in (".", ".."):
        raise ValueError(f"version {version!r} cannot name a directory")
    when = when.astimezone(UTC)
    return Path(capture_dir) / version / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}" / f"{when:%H}"


class CaptureRecords:
    """The records under a capture directory, oldest hour first, read lazily (a month of
    captures is never held in memory at once).

    Iterate it for the record dicts, or ``decoded()`` for their rows. Afterwards ``files``,
    ``records``, ``unreadable`` (lines that are not a capture record the monitor can use: not
    JSON, too deeply nested, or a field of the wrong type), ``truncated`` (a file's last line cut
    short, usually a writer that was stopped mid-line), ``unreadable_files`` (a file that could
    not be opened or decompressed, from there on), ``not_directories`` (paths where a directory
    of captures should be and something else is) and ``skipped_before_since`` tell what was read.
    """

    def __init__(self, directory: Path, since: datetime | None = None, version: str | None = None) -> None:
        self.directory = Path(directory)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        self.since = since
        self.version = version
        self.files = 0
        self.records = 0
        self.unreadable = 0
        self.truncated = 0
        self.unreadable_files = 0
        self.not_directories: list[Path] = []
        self.skipped_before_since = 0

    def paths(self) -> list[Path]:
        """The capture files that may hold records of the asked version and time, in time order."""
        if self.directory.exists() and not self.directory.is_dir():
            self.not_directories.append(self.directory)
            return []
        if self.version is not None:
            roots = [self.directory / self.version]
        else:
            roots = sorted(p for p in self.directory.iterdir() if p.is_dir()) if self.directory.is_dir() else []
        found = []
        for root in roots:
            if not root.is_dir():
                if root.exists():
                    self.not_directories.append(root)
                continue
            for path in root.rglob("*"):
                if not path.name.endswith(SUFFIXES) or not path.is_file():
                    continue
                hour = _hour_of(path.relative_to(root))
                if self.since is not None and hour is not None and hour < self.since.replace(
                        minute=0, second=0, microsecond=0):
                    continue  # the whole hour is before `since`
                found.append((hour or datetime.min.replace(tzinfo=UTC), str(path), path))
        return [path for _, _, path in sorted(found)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for path in self.paths():
            self.files += 1
            yield from self._read(path)

    def _read(self, path: Path) -> Iterator[dict[str, Any]]:
        try:
            handle = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
        except FileNotFoundError:  # removed (pruned) while we were reading
            return
        except OSError:
            self.unreadable_files += 1
            return
        with handle:
            try:
                for line in handle:
                    if not line.strip():
                        continue
                    parsed = _parse(line)
                    if parsed is None:
                        # Only a file's last line can lack its newline: a write cut short.
                        if line.endswith(b"\n"):
                            self.unreadable += 1
                        else:
                            self.truncated += 1
                        continue
                    record, when = parsed
                    if self.since is not None and when < self.since:
                        self.skipped_before_since += 1
                        continue
                    self.records += 1
                    yield record
            except EOFError:  # a compressed file cut short: what it held has been read
                self.truncated += 1
            except (OSError, zlib.error):  # not gzip data, or unreadable: the rest of this file
                self.unreadable_files += 1

    def decoded(self, feature_names: Sequence[str] | None = None) -> Iterator[DecodedRecord]:
        """The records' rows and predictions (``decode_rows``). A record that cannot be decoded all the same
        is counted as unreadable: one bad record never keeps the monitor from judging the others."""
        for record in self:
            try:
                decoded = decode_rows(record, feature_names)
            except Exception as err:  # the reader's promise: counted, never a crash
                log.debug("capture record %r not decoded: %s: %s", _record_id(record), type(err).__name__, err)
                self.records -= 1
                self.unreadable += 1
                continue
            yield decoded


def _record_id(record: dict[str, Any]) -> str:
    metadata = record.get("eventMetadata")
    return str(metadata.get("inferenceId") or metadata.get("eventId"))[:80] if isinstance(metadata, dict) else "?"


def iter_capture_records(directory: Path, since: datetime | None = None, version: str | None = None) -> CaptureRecords:
    """The capture records of ``version`` (every version when None) under ``directory``
    with ``inferenceTime`` at or after ``since``; see ``CaptureRecords`` for the counts."""
    return CaptureRecords(directory, since=since, version=version)


def _hour_of(relative: Path) -> datetime | None:
    parts = relative.parts[:-1]
    if len(parts) != 4:
        return None
    try:
        year, month, day, hour = (int(part) for part in parts)
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def _parse(line: bytes) -> tuple[dict[str, Any], datetime] | None:
    """A line's record and time, or None when the line is not a record ``decode_rows`` can use: every
    field the monitor reads is checked for its type here, so that decoding the record cannot fail."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested deeper than the parser goes
        return None
    if not isinstance(record, dict):
        return None
    metadata, capture = record.get("eventMetadata"), record.get("captureData")
    if not isinstance(metadata, dict) or not isinstance(capture, dict):
        return None
    inference_id = metadata.get("inferenceId") or metadata.get("eventId")
    if not isinstance(inference_id, str) or not isinstance(metadata.get("inferenceTime"), str):
        return None
    output = capture.get("endpointOutput")
    if not _readable_payload(capture.get("endpointInput"), data_required=True) or \
            not (output is None or _readable_payload(output, data_required=False)):
        return None
    try:
        when = parse_time(metadata["inferenceTime"])
    except (ValueError, OverflowError):
        return None
    return record, when


def _readable_payload(payload: Any, data_required: bool) -> bool:
    """An ``endpointInput`` or ``endpointOutput`` whose fields have the types SageMaker writes."""
    if not isinstance(payload, dict):
        return False
    data = payload.get("data")
    if not isinstance(data, str) and (data_required or data is not None):
        return False
    return all(payload.get(name) is None or isinstance(payload.get(name), str)
               for name in ("observedContentType", "encoding"))


class DecodedRecord(NamedTuple):
    """``rows``: a (n, width) float array when the request's rows all have one width, else a
    list of 1-D arrays (a client sent rows of several widths). A value that is empty, null
    or not a number is NaN. ``predictions``: the answer's predictions, [] when there was
    no answer or it was not a list of predictions."""

    rows: np.ndarray | list[np.ndarray]
    predictions: list[Any]
    inference_id: str
    time: datetime


def decode_rows(record: dict[str, Any], feature_names: Sequence[str] | None = None) -> DecodedRecord:
    """The rows a captured request sent and the predictions it got back.

    Rows sent with column names (MLflow's ``dataframe_split``, ``dataframe_records``,
    ``inputs`` by column, or a list of objects) are put in ``feature_names``' order -- the
    baseline's, which is the model's -- so they compare with the training data column by
    column; a named feature the request lacks is missing (NaN), a column the model does not
    know is left out. Without ``feature_names`` they stay in the order the request gave."""
    metadata = record["eventMetadata"]
    inference_id = str(metadata.get("inferenceId") or metadata["eventId"])
    when = parse_time(metadata["inferenceTime"])
    capture = record["captureData"]
    rows = _decode_input(capture["endpointInput"], feature_names)
    output = capture.get("endpointOutput")
    predictions = _decode_output(output) if output else []
    return DecodedRecord(rows, predictions, inference_id, when)


def _json(text: str) -> Any:
    """The JSON value of a body, or None when it is not JSON or is nested deeper than the parser goes
    (a ``[`` repeated 50,000 times is a body a client can send, and the endpoint refuses)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _text_and_type(payload: dict[str, Any]) -> tuple[str, str]:
    data = payload.get("data") or ""
    media_type = _media_type(payload.get("observedContentType"))
    encoding = str(payload.get("encoding") or "").upper()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=False).decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
            return "", media_type
    elif encoding == "CSV" and not media_type:
        media_type = CSV
    elif encoding == "JSON" and not media_type:
        media_type = JSON
    return data, media_type


def _decode_input(payload: dict[str, Any], feature_names: Sequence[str] | None = None) -> np.ndarray | list[np.ndarray]:
    text, media_type = _text_and_type(payload)
    if media_type == CSV:
        rows = [_csv_row(line) for line in text.splitlines() if line.strip()]
    elif media_type == JSON:
        body = _json(text)
        if isinstance(body, dict) and set(body) == {"instances"} and _positional(body["instances"]):
            body = body["instances"]  # the common envelope, read leniently below
        elif isinstance(body, dict) or (isinstance(body, list) and body and isinstance(body[0], dict)):
            return _decode_served(text, feature_names)
        if not isinstance(body, list) or not body:
            rows = []
        elif not isinstance(body[0], list):
            rows = [[_number(value) for value in body]]
        else:
            rows = [[_number(value) for value in row] if isinstance(row, list) else [_number(row)] for row in body]
    else:
        rows = []
    widths = {len(row) for row in rows}
    if len(widths) <= 1:
        return np.array(rows, dtype=np.float64).reshape(len(rows), widths.pop() if widths else 0)
    return [np.array(row, dtype=np.float64) for row in rows]


def _positional(rows: Any) -> bool:
    return isinstance(rows, list) and bool(rows) and not isinstance(rows[0], dict)


def _decode_served(text: str, feature_names: Sequence[str] | None) -> np.ndarray:
    """A JSON object body (MLflow's envelopes) read exactly as the endpoint read it: by
    ``inference.input_fn``, so the monitor never parses a format differently from the server.
    A body it refuses (the endpoint answered it 4xx, or another server captured it) has no rows."""
    from pipeline.container import inference  # the endpoint's workers have it loaded; the monitor pays once

    nothing = np.empty((0, 0), dtype=np.float64)
    try:
        parsed = inference.input_fn(text, JSON)
        named = isinstance(parsed, inference.NamedRows)
        values = np.asarray(parsed.rows if named else parsed, dtype=np.float64)
    except (inference.InferenceError, ValueError, TypeError, OverflowError, RecursionError):
        return nothing  # refused, as the endpoint refused it (a number no float holds, too deep, ...)
    if values.ndim != 2:
        return nothing
    values = np.where(np.isfinite(values), values, np.nan)
    if not named or feature_names is None:
        return values
    position = {name: index for index, name in enumerate(parsed.columns)}
    rows = np.full((values.shape[0], len(feature_names)), np.nan, dtype=np.float64)
    for index, name in enumerate(feature_names):
        if name in position:
            rows[:, index] = values[:, position[name]]
    return rows


def _csv_row(line: str) -> list[float]:
    cells = line.split(",")
    try:
        row = [float(cell) for cell in cells]  # the common case: all numbers
    except ValueError:
        return [_number(cell) for cell in cells]
    return [value if math.isfinite(value) else math.nan for value in row]


def _number(value: Any) -> float:
    """A JSON value as a feature value: NaN (missing) unless it is a finite number or the text of one.
    An integer too large for a float (300 digits) is out of range like ``1e999``: missing, not a crash."""
    if isinstance(value, bool):
        return math.nan
    try:
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:  # null, a list, an object: no number (and never str() of a deeply nested one)
            return math.nan
    except (ValueError, OverflowError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _decode_output(payload: dict[str, Any]) -> list[Any]:
    text, media_type = _text_and_type(payload)
    if media_type == JSON:
        body = _json(text)
        predictions = body.get("predictions") if isinstance(body, dict) else body
        # A class is a number, a string or a bool; anything else (a list, an object) is no class, kept as
        # None so the predictions still line up with the rows of the request.
        return [p if isinstance(p, (str, int, float)) else None for p in predictions] \
            if isinstance(predictions, list) else []
    if media_type == CSV:
        return [line.strip() for line in io.StringIO(text) if line.strip()]
    return []


def prediction_keys(inference_id: str, count: int) -> list[str]:
    """The keys a labels file uses for the predictions of one request: the inference id
    itself for a one-row request, ``<id>:<row index>`` for each row of a larger one."""
    return [inference_id] if count == 1 else [f"{inference_id}:{index}" for index in range(count)]
