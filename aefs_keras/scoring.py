"""Scoring a file with a saved model: `aefs-keras predict MODEL FILE --out OUT`.

Reads a CSV/TSV (plain or .gz, with a header) or Parquet file in chunks,
turns each row's cells into the model's features by the model's own schema
(the same rules as training: strings stripped, a blank number missing,
lists split at the field's separator), and writes one output row per
scored row: its line in the input, the click probability and, for a model
that selects per row, the fields it kept. A row that cannot be scored (a
wrong column count, a non-number in a numeric column) is counted and
reported with its line, never dropped silently: rows written plus rows
reported equal the input's data lines.
"""

from __future__ import annotations

import csv
import math
import os
import time

import numpy as np
import tensorflow as tf

from aefs_keras.datasets.infer import _NUMBER as NUMBER  # the readers' rule for a number
from aefs_keras.schema import Categorical, DenseNumeric, MultiCategorical, Numeric, list_padding


class ScoreReport:
    """Rows scored and rows skipped, by cause, with the first lines."""

    def __init__(self, path):
        self.path, self.lines, self.scored, self.skipped, self.causes = path, 0, 0, 0, {}

    def skip(self, line, cause):
        self.skipped += 1
        entry = self.causes.setdefault(cause, [0, line])
        entry[0] += 1

    def __str__(self):
        text = f"{self.path}: {self.lines:,} data lines, {self.scored:,} scored, {self.skipped:,} skipped"
        if self.causes:
            text += "".join(f"\n  {cause}: {n:,} (first at line {line})" for cause, (n, line) in self.causes.items())
        return text


def _cell_reader(field, number):
    """cell text -> the feature's value, or raise ValueError(cause)."""
    if isinstance(field, MultiCategorical):
        is_int = field.input_dtype == "int64"

        def read_list(cell):
            values = [v.strip() for v in cell.split(field.separator) if v.strip()]
            try:
                return [int(v) for v in values] if is_int else [v.encode("utf-8", "surrogateescape") for v in values]
            except ValueError:
                raise ValueError(f"non-integer id in list column {field.name!r}") from None
        return read_list
    if isinstance(field, (Numeric, DenseNumeric)):
        def read_number(cell):
            cell = cell.strip()
            if cell == "":
                return math.nan  # missing, as in training
            if not number.match(cell):
                raise ValueError(f"non-number in numeric column {field.name!r}")
            return float(cell)
        return read_number
    if isinstance(field, Categorical) and field.input_dtype == "int64":
        def read_id(cell):
            try:
                return int(cell.strip())
            except ValueError:
                raise ValueError(f"non-integer id in column {field.name!r}") from None
        return read_id
    # Bytes as the training reader saw them (text_lines kept bad UTF-8 as surrogates).
    return lambda cell: cell.strip().encode("utf-8", "surrogateescape")


def _columns(schema):
    weights = [f.weight for f in schema.fields if isinstance(f, MultiCategorical) and f.weight]
    if weights:
        raise ValueError(f"predict: list weights ({', '.join(weights)}) are not read from files; score this "
                         "model from Python (model.predict)")
    return list(schema.fields)


def _batch(schema, fields, rows):
    """Parsed rows (one value per field) -> the model's feature dict."""
    out = {}
    for j, f in enumerate(fields):
        values = [r[j] for r in rows]
        if isinstance(f, MultiCategorical):
            width = max(1, max((len(v) for v in values), default=0))
            pad = list_padding(f.input_dtype)
            pad = pad.encode() if isinstance(pad, str) else pad
            out[f.name] = np.array([v + [pad] * (width - len(v)) for v in values],
                                   dtype=object if f.input_dtype == "string" else "int64")
        elif f.input_dtype == "string":
            out[f.name] = np.array(values, dtype=object)
        else:
            out[f.name] = np.array(values, dtype=f.input_dtype)
    return out


def _text_chunks(path, fields, report, chunk, delimiter, strict):
    from aefs_keras.datasets.infer import _delimiter, split_cells, text_lines

    number = NUMBER
    first, lines = text_lines(path)
    if not first.strip():
        raise ValueError(f"{path}: the first line is empty; a header row with the column names is needed")
    sep = _delimiter(path, first, delimiter)
    header = [h.strip() for h in next(csv.reader([first], delimiter=sep))]
    missing = [f.name for f in fields if f.name not in header]
    if missing:
        raise ValueError(f"{path} lacks the model's feature column(s) {missing}. Its header: {', '.join(header)}")
    index = [header.index(f.name) for f in fields]
    readers = [_cell_reader(f, number) for f in fields]
    numbers, rows = [], []
    for line, text in lines:
        report.lines += 1
        row = split_cells(text, sep)  # as the training reader splits: no quoting
        if not text.strip():
            cause = "empty line"
        elif len(row) != len(header):
            cause = "wrong number of columns"
        else:
            try:
                rows.append([read(row[i]) for read, i in zip(readers, index)])
                numbers.append(line)
                cause = None
            except ValueError as e:
                cause = str(e)
        if cause is not None:
            if strict:
                raise ValueError(f"{path}:{line}: {cause}")
            report.skip(line, cause)
        if len(rows) >= chunk:
            yield numbers, rows
            numbers, rows = [], []
    if rows:
        yield numbers, rows


def _parquet_chunks(path, fields, report, chunk):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 (pyarrow's errors have no common base)
        raise ValueError(f"{path} is not a readable Parquet file: {e}") from None
    names = pf.schema_arrow.names
    missing = [f.name for f in fields if f.name not in names]
    if missing:
        raise ValueError(f"{path} lacks the model's feature column(s) {missing}. Its columns: {', '.join(names)}")
    first = 1
    for rb in pf.iter_batches(batch_size=chunk, columns=[f.name for f in fields]):
        columns = rb.to_pydict()
        lines, rows = [], []
        for r in range(rb.num_rows):
            report.lines += 1
            row = []
            for f in fields:
                v = columns[f.name][r]
                if isinstance(f, MultiCategorical):
                    v = [] if v is None else ([str(e) for e in v if e is not None] if f.input_dtype == "string"
                                              else [int(e) for e in v if e is not None])
                elif f.input_dtype == "string":
                    v = "" if v is None else str(v).strip()
                elif f.input_dtype == "float32":
                    v = math.nan if v is None else float(v)
                else:
                    v = -1 if v is None else int(v)
                row.append(v)
            rows.append(row)
            lines.append(first + r)
        first += rb.num_rows
        yield lines, rows


class _Writer:
    """CSV, or Parquet when the output ends in .parquet; written whole."""

    def __init__(self, tmp, parquet, with_fields):
        self.parquet, self.with_fields = parquet, with_fields
        self.names = ["line", "probability"] + (["kept_fields"] if with_fields else [])
        if parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            types = [pa.int64(), pa.float32()] + ([pa.string()] if with_fields else [])
            self.schema = pa.schema(list(zip(self.names, types)))
            self.out = pq.ParquetWriter(tmp, self.schema)
        else:
            self.file = open(tmp, "w", newline="")
            self.out = csv.writer(self.file)
            self.out.writerow(self.names)

    def write(self, lines, probability, kept):
        if self.parquet:
            import pyarrow as pa

            columns = [pa.array(lines, pa.int64()), pa.array(probability, pa.float32())]
            if self.with_fields:
                columns.append(pa.array(kept, pa.string()))
            self.out.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        else:
            rows = zip(lines, (f"{p:.6g}" for p in probability), *([kept] if self.with_fields else []))
            self.out.writerows(rows)

    def close(self):
        (self.out if self.parquet else self.file).close()


def score_file(model, path: str, out: str, batch_size: int = 4096, delimiter: str | None = None,
               strict: bool = False, progress: bool = True) -> ScoreReport:
    """Score `path` with `model` into `out` (see the module doc).

    Args:
        model: a model with a schema (as `build_model` makes, or loaded).
        path: CSV/TSV (plain or .gz, with a header) or Parquet.
        out: the output file: Parquet when it ends in .parquet, else CSV.
        batch_size: rows scored per step.
        delimiter: one character (default: from the extension or header).
        strict: raise at the first row that cannot be scored.
        progress: print a progress line.

    Returns the `ScoreReport`.
    """
    from aefs_keras.files import written_whole
    from aefs_keras.inputs import model_inputs
    from aefs_keras.progress import RateLine
    from aefs_keras.serving import inference_model, selector_of

    schema = getattr(model, "schema", None)
    if schema is None:
        raise ValueError("predict needs a model with a schema (a CTRModel from aefs_keras.build_model)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    fields = _columns(schema)
    serving = inference_model(model)
    with_fields = selector_of(model) is not None
    report = ScoreReport(path)
    is_parquet = path.endswith((".parquet", ".parq"))
    chunks = (_parquet_chunks(path, fields, report, batch_size) if is_parquet
              else _text_chunks(path, fields, report, batch_size, delimiter, strict))
    line = RateLine("predict") if progress else None
    with written_whole(out) as tmp:
        writer = _Writer(tmp, out.endswith(".parquet"), with_fields)
        report.columns = writer.names
        try:
            for lines, rows in chunks:
                features = model_inputs(schema, _batch(schema, fields, rows))
                # A Keras call takes tensors only, not numpy mixed with tensors.
                result = serving({k: tf.convert_to_tensor(v) for k, v in features.items()}, training=False)
                probability = np.asarray(result["probability"]).reshape(-1)
                kept = None
                if with_fields:
                    names = np.asarray(result["selected_field_names"]).astype(str)
                    kept = ["|".join(r) for r in names]
                writer.write(lines, probability, kept)
                report.scored += len(rows)
                if line is not None:
                    line.update(report.scored)
        finally:
            writer.close()
    if line is not None:
        line.done(f"{report.scored:,} rows scored in {line.seconds:.1f} s")
    return report


def run(args) -> int:
    """`aefs-keras predict`."""
    from aefs_keras.files import load_model

    start = time.perf_counter()
    model = load_model(args.model, compile=False)
    print(f"Loaded {args.model} in {time.perf_counter() - start:.1f} s", flush=True)
    report = score_file(model, args.file, args.out, batch_size=args.batch_size, delimiter=args.delimiter,
                        strict=args.strict, progress=True)
    print(report)
    print(f"Wrote {args.out}: {', '.join(report.columns)} per scored row")
    return 0
