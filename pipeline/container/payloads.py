"""What a request body and an Accept header say, in every shape the endpoint takes.

Bodies: CSV rows (with or without a header row of column names, as MLflow's CSV clients send), JSON
rows by position, and MLflow's scoring shapes by name (``dataframe_split``, ``dataframe_records``,
``instances``/``inputs`` of rows or objects, ``inputs`` by column), decoded into a float matrix or
``NamedRows``. Accept: JSON or CSV by quality, and the ``probabilities=true`` parameter, the one switch
for probabilities SageMaker passes on (``parse_switch`` reads every true/false switch the same way).

Shipped to SageMaker's container with the hooks: numpy and the standard library (pandas for big CSV
bodies) only; orjson, where it is installed, reads JSON bodies faster (``_plain_json_rows``), and its absence
changes nothing but the speed.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

if __package__:  # imported as pipeline.container.payloads
    from .inference_errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError
else:  # in SageMaker's container: the source dir's files are top-level modules
    from inference_errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError

try:  # a JSON parser in C, 5-8x faster than json's on the endpoint's bodies; SageMaker's container may lack it
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - the fallback is json's parser, which reads every body anyway
    _orjson_loads = None

PROBABILITIES_PARAMETER = "probabilities"  # Accept: application/json; probabilities=true
CSV = "text/csv"
JSON = "application/json"


def parse_switch(name: str, value: str | None, error: type[Exception] = BadRequestError) -> bool:
    """A true/false switch (a header, or the Accept parameter): absent is false, anything else refused."""
    if value is None:
        return False
    word = value.strip().lower()
    if word == "true":
        return True
    if word == "false":
        return False
    raise error(f"{name}: expected true or false, got {value[:40]!r}")


@functools.lru_cache(maxsize=256)  # a client sends the same few headers again and again
def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


# Above this size a CSV body is parsed with pandas' C parser, 2-3x faster than np.loadtxt per
# row (about 740,000 against 350,000 rows/s of 20 features here); below it np.loadtxt's
# lower fixed cost per call (~15 against ~550 us) wins. They break even at about 16 KB
# (1,000 rows of 4 features). pandas is already imported with scikit-learn.
_PANDAS_CSV_BYTES = 24 * 1024


def _fast_csv(input_data: bytes | str) -> np.ndarray | None:
    """A big CSV body as a finite float matrix, or None to let np.loadtxt parse it (and
    report what is wrong with it): only a clean result of pandas is taken."""
    import pandas as pd

    raw = input_data.encode() if isinstance(input_data, str) else bytes(input_data)
    try:
        frame = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.float64, engine="c", quoting=3)  # QUOTE_NONE
    except Exception:
        return None
    rows = np.ascontiguousarray(frame.to_numpy(dtype=np.float64))  # row-major, as np.loadtxt gives
    if rows.ndim != 2 or rows.shape[0] == 0 or not np.isfinite(rows).all():
        return None
    return rows


@dataclass(frozen=True)
class NamedRows:
    """Rows whose values came with column names: ``predict_fn`` puts them in the model's order."""

    columns: tuple[str, ...]
    rows: np.ndarray  # (rows, columns) floats, finite, in the order of ``columns``


# MLflow's scoring server takes exactly one of these keys (and ``instances`` is TensorFlow Serving's).
_ENVELOPES = ("dataframe_split", "dataframe_records", "instances", "inputs")
_SPLIT_KEYS = ("columns", "data", "index")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _named(columns: list[Any], rows: list[Any], where: str) -> NamedRows:
    """Values by row, ``columns`` naming their positions, as ``NamedRows``; a bad value is refused by its column."""
    if not columns:
        raise BadRequestError(f"{where}: no columns")
    if not all(isinstance(name, str) for name in columns):
        raise BadRequestError(f"{where}: column names must be strings")
    if len(set(columns)) != len(columns):
        twice = next(name for name in columns if columns.count(name) > 1)
        raise BadRequestError(f"{where}: column {twice!r} appears twice")
    if not isinstance(rows, list) or not rows:
        raise BadRequestError(f"{where}: expected a non-empty list of rows")
    width = len(columns)
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != width:
            count = f"{len(row)} values" if isinstance(row, (list, tuple)) else _shown(row)
            raise BadRequestError(f"{where}: row {index} has {count} for {width} columns")
    for position, name in enumerate(columns):
        for row in rows:
            value = row[position]
            if type(value) is not float and type(value) is not int:  # bool is not int here; None, str, list...
                raise BadRequestError(f"column {name!r}: values must be numbers, got {_shown(value)}")
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:
        name = next(name for position, name in enumerate(columns)
                    if any(type(row[position]) is int and abs(row[position]) > 1e308 for row in rows))
        raise BadRequestError(f"column {name!r}: a number too large for a float") from None
    finite = np.isfinite(matrix).all(axis=0)
    if not finite.all():
        raise BadRequestError(f"column {columns[int(np.argmin(finite))]!r}: values must not be NaN or infinity")
    return NamedRows(tuple(columns), matrix)


def _records(records: list[Any], where: str) -> NamedRows:
    """``[{column: value}, ...]`` (pandas' records orient): the columns are all the names, in order of appearance."""
    names: dict[str, None] = {}
    for index, record in enumerate(records):
        if type(record) is not dict:
            raise BadRequestError(f"{where}: row {index} is {_shown(record)}, not an object {{column: value}} "
                                  f"like the rows before it")
        for name in record:
            names.setdefault(name)
    columns = list(names)
    rows = []
    for index, record in enumerate(records):
        if len(record) != len(columns):
            name = next(name for name in columns if name not in record)
            raise BadRequestError(f"{where}: row {index} has no value for column {name!r}")
        rows.append([record[name] for name in columns])
    return _named(columns, rows, where)


def _by_column(columns: dict[str, Any]) -> NamedRows:
    """MLflow's ``{"inputs": {column: [values...]}}`` (or one value per column: one row)."""
    values = list(columns.values())
    if values and all(isinstance(value, list) for value in values):
        if len({len(value) for value in values}) != 1:
            raise BadRequestError('"inputs": every column must have the same number of values')
        return _named(list(columns), [list(row) for row in zip(*values)], '"inputs"')
    if any(isinstance(value, list) for value in values):
        raise BadRequestError('"inputs": give every column a list of values, or every column one value')
    return _named(list(columns), [values], '"inputs"')


def _split(frame: Any) -> list[Any] | NamedRows:
    """pandas' split orient: ``{"columns": [...], "data": [[...]]}`` (``index`` is ignored, as MLflow does)."""
    if type(frame) is not dict:
        raise BadRequestError('"dataframe_split" must be an object {"columns": [...], "data": [[...]]}')
    unknown = [key for key in frame if key not in _SPLIT_KEYS]
    if unknown:
        raise BadRequestError(f'"dataframe_split": unexpected key {unknown[0]!r} (it takes columns, data and index)')
    data = frame.get("data")
    if not isinstance(data, list) or not data:
        raise BadRequestError('"dataframe_split" needs "data": a non-empty list of rows')
    if "columns" not in frame:
        return data  # no names: rows by position
    if not isinstance(frame["columns"], list):
        raise BadRequestError('"dataframe_split": "columns" must be a list of column names')
    return _named(frame["columns"], data, '"dataframe_split"')


def _unwrap(payload: dict[str, Any]) -> Any:
    """The rows inside one of MLflow's JSON objects: a list (rows or records) or ``NamedRows``."""
    if len(payload) == 1:  # {"inputs": [[...]]}, MLflow's fastest, and {"instances": [[...]]}: no more checks
        rows = payload.get("inputs") or payload.get("instances")
        if type(rows) is list and rows and type(rows[0]) is list:
            return rows
    keys = [key for key in payload if key in _ENVELOPES]
    others = [key for key in payload if key not in _ENVELOPES]
    if len(keys) != 1 or others:
        what = f"unexpected key {others[0]!r}" if others else f"{len(keys)} of them"
        raise BadRequestError('JSON object must have exactly one of "dataframe_split", "dataframe_records", '
                              f'"instances" or "inputs" ({what})')
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split(value)
    if key == "inputs" and type(value) is dict:
        return _by_column(value)
    if key == "dataframe_records" and not (isinstance(value, list) and value and type(value[0]) is dict):
        raise BadRequestError('"dataframe_records" must be a non-empty list of objects {column: value}')
    if not isinstance(value, list) or not value:
        raise BadRequestError(f'"{key}" must be a non-empty list of rows')
    return value


# A CSV body whose first character is one of these starts with a row of numbers: no header row to look for.
_NUMBER_START = frozenset("0123456789+-.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_header(text: str) -> tuple[list[str], str] | None:
    """A CSV body's first row of column names and the rows after it, or None when the first row is not names.

    A first row is names when each of its fields is text that is not a number (and not empty) and rows follow
    it; anything else is left to the numeric parser, which says what is wrong with it.
    """
    if text[:1] in _NUMBER_START:
        return None
    line, newline, rest = text.partition("\n")
    if not newline or not rest.strip():
        return None
    try:
        names = [name.strip() for name in next(csv.reader([line.rstrip("\r")]))]
    except (csv.Error, StopIteration):
        return None
    if not names or any(not name or _is_number(name) for name in names):
        return None
    return names, rest


def _csv_rows(text: str) -> np.ndarray:
    rows = _fast_csv(text) if len(text) >= _PANDAS_CSV_BYTES else None
    if rows is None:  # small bodies, and anything pandas finds odd: numpy's strict parser
        rows = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    return rows


def _csv_named(names: list[str], rows: np.ndarray) -> NamedRows:
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise BadRequestError(f"CSV header row: column {twice!r} appears twice")
    if rows.shape[1] != len(names):
        raise BadRequestError(f"CSV header row names {len(names)} columns, but the rows have {rows.shape[1]} values")
    return NamedRows(tuple(names), rows)


def _plain_json_rows(input_data: bytes | str) -> np.ndarray | None:
    """The rows of the common JSON body -- ``[[...], ...]``, ``[...]`` (one row), ``{"inputs": [[...]]}`` or
    ``{"instances": [[...]]}`` of finite numbers -- read by orjson; None for anything else, which the general
    parser below then reads (and refuses with its messages): so this one only ever gives the matrix the
    general one would give, faster. orjson takes fewer bodies than json does (no NaN or Infinity, no integer
    over 64 bits, no invalid UTF-8) and reads the numbers it takes to the same floats."""
    try:
        payload = _orjson_loads(input_data)
    except ValueError:  # orjson.JSONDecodeError
        return None
    if type(payload) is dict:
        if len(payload) != 1:
            return None
        payload = payload.get("inputs") or payload.get("instances")
        if type(payload) is not list or not payload or type(payload[0]) is not list:
            return None
    elif type(payload) is not list or not payload:
        return None
    if type(payload[0]) is not list:
        payload = [payload]
    for row in payload:
        if type(row) is not list:
            return None
        for value in row:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # NaN or infinity
                    return None
            elif kind is not int:  # bool, str, None, a list...
                return None
    try:
        rows = np.array(payload, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):  # rows of different lengths
        return None
    if rows.ndim != 2 or rows.shape[0] == 0:
        return None
    return rows


def decode_body(input_data: bytes | str, content_type: str) -> np.ndarray | NamedRows:
    """Parse CSV rows, or JSON rows by position or by name, into a float matrix (``NamedRows`` when named).

    CSV: rows of numbers, the first row optionally the column names (MLflow's CSV clients send one):
    ``NamedRows`` then, which ``predict_fn`` matches to the model's input schema by name -- exactly the
    schema's names, in its order or in any other (the columns are put in the model's order, as for JSON
    named columns); other names are a 400 naming the missing and unexpected ones. A first row counts as
    names only when every field is non-empty text that is not a number.

    JSON: a list of rows; ``{"instances": [...]}`` or ``{"inputs": [...]}`` of rows or of objects
    ``{column: value}``; ``{"inputs": {column: [values]}}``; ``{"dataframe_split": {"columns": [...],
    "data": [[...]]}}``; ``{"dataframe_records": [{column: value}, ...]}``.
    """
    media_type = _media_type(content_type)
    if media_type == JSON:
        rows = _plain_json_rows(input_data) if _orjson_loads is not None else None
        if rows is not None:
            return rows
    elif media_type != CSV:
        raise UnsupportedContentTypeError(
            f"unsupported content type {content_type!r}: send text/csv or application/json"
        )
    try:
        text = input_data.decode("utf-8") if isinstance(input_data, (bytes, bytearray)) else input_data
    except UnicodeDecodeError:
        raise BadRequestError("request body is not UTF-8 text") from None
    if not text.strip():
        raise BadRequestError("empty request body: send at least one row")
    header = None
    try:
        if media_type == CSV:
            header = _csv_header(text)
            rows = _csv_rows(text if header is None else header[1])
        else:
            payload = json.loads(text)
            if type(payload) is dict:
                payload = _unwrap(payload)
                if type(payload) is NamedRows:
                    return payload
            if not isinstance(payload, list) or not payload:
                raise BadRequestError("JSON body must be a non-empty list of rows")
            if type(payload[0]) is dict:
                return _records(payload, "rows")
            if not isinstance(payload[0], list):
                payload = [payload]
            if any(isinstance(value, (bool, str)) or value is None for row in payload for value in row):
                raise ValueError("values must be numbers")
            rows = np.asarray(payload, dtype=np.float64)
    except BadRequestError:
        raise
    except json.JSONDecodeError as err:
        raise BadRequestError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:  # json's parser and numpy both recurse once per level of nesting
        raise BadRequestError("JSON nested too deeply: send a list of rows of numbers") from None
    except (ValueError, TypeError, OverflowError) as err:
        raise BadRequestError(f"rows must be numbers only, all of the same length: {err}") from None
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise BadRequestError("expected a non-empty list of rows")
    if not np.isfinite(rows).all():
        raise BadRequestError("rows must not contain NaN or infinity")
    if header is not None:
        return _csv_named(header[0], rows)
    return rows


_ACCEPTABLE = {"": JSON, "*/*": JSON, JSON: JSON, "application/*": JSON, CSV: CSV, "text/*": CSV}


@functools.lru_cache(maxsize=256)
def negotiate(accept: str | None, probabilities: bool = False) -> tuple[str, bool] | None:
    """The type to answer in, JSON or CSV, for an Accept header such as ``text/csv, application/json;q=0.5``, and
    whether the answer is to carry probabilities; None when the header accepts neither.

    Probabilities are asked for by ``probabilities`` (a server's own switch) or by any type the header accepts
    with the parameter ``probabilities=true``. Only JSON carries them, so when they are asked for, JSON is chosen
    whenever the header accepts it (without ``probabilities=false``), even below a CSV it ranks higher:
    ``text/csv, application/json; probabilities=true`` is answered in JSON with probabilities, never in CSV
    without them. When it accepts no such JSON (``text/csv; probabilities=true``), the best type is answered
    with probabilities asked for, and ``output_fn`` refuses that with a 406 saying so: the switch is never
    silently dropped.
    """
    if not (accept or "").strip():
        return JSON, probabilities
    offers = []
    for position, item in enumerate(accept.split(",")):
        media_type, *params = [part.strip() for part in item.split(";")]
        quality = 1.0
        asks: bool | None = None
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif name == PROBABILITIES_PARAMETER:
                asks = parse_switch(f"Accept parameter {PROBABILITIES_PARAMETER}", value, UnsupportedAcceptError)
        if quality > 0 and media_type.lower() in _ACCEPTABLE:
            offers.append((-quality, position, _ACCEPTABLE[media_type.lower()], asks))
    if not offers:
        return None
    asked = probabilities or any(asks for *_, asks in offers)
    if asked and any(kind == JSON and asks is not False for _, _, kind, asks in offers):
        return JSON, True
    return min(offers)[2], asked


def accept_asks_for_probabilities(accept: str | None) -> bool:
    """Whether any type the Accept header accepts carries ``probabilities=true`` (for a server with a switch of its
    own, which must not contradict it)."""
    negotiated = negotiate(accept)
    return bool(negotiated and negotiated[1])
