"""The baseline for ``predict``: pandas.read_csv of the whole file, model.predict, to_csv -- nothing else.

    python bench/bare_predict.py MODEL.joblib INPUT.csv OUTPUT.csv

No sha256 check, no column matching beyond taking the model's columns by name, no bad-row handling, no
streaming: the file is read whole. The output has the columns ``predict`` writes without an id column
(``row``, the row number from 1, and ``prediction``), so the two outputs can be compared byte for byte.
"""
import sys

import joblib
import pandas as pd


def main() -> None:
    model_path, source, output = sys.argv[1:4]
    model = joblib.load(model_path)
    frame = pd.read_csv(source)
    predictions = model.predict(frame[list(model.feature_names_in_)])
    pd.DataFrame({"prediction": predictions}, index=pd.RangeIndex(1, len(frame) + 1, name="row")).to_csv(output)


if __name__ == "__main__":
    main()
