"""Score a folder from Python, then look at the report with pandas.

    python examples/python_api.py WEIGHTS FOLDER [REPORT.parquet]
"""

import sys

import pandas as pd

import aiiscan

if __name__ == "__main__":
    weights, folder = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else "report.parquet"
    detector = aiiscan.Detector.load(weights, device="auto")
    report = aiiscan.scan([folder], out, detector=detector, quiet=True)
    df = pd.read_parquet(report)
    print(df.groupby("status").size().to_string())
    print(df.sort_values("score", ascending=False)[["path", "score", "label"]].head(10).to_string())
