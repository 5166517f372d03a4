"""Score a folder from Python, then look at the report with pyarrow (no pandas needed).

    python examples/python_api.py WEIGHTS FOLDER [REPORT.parquet]
"""

import sys
from collections import Counter

import aiiscan
from aiiscan.reports.read import read_report

if __name__ == "__main__":
    weights, folder = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else "report.parquet"
    detector = aiiscan.Detector.load(weights, device="auto")
    report = aiiscan.scan([folder], out, detector=detector, quiet=True)
    rows = read_report(report).select(["path", "status", "score", "label"]).to_pylist()
    for status, count in sorted(Counter(r["status"] for r in rows).items()):
        print(f"{status:<8} {count}")
    for r in sorted((r for r in rows if r["score"] is not None), key=lambda r: -r["score"])[:10]:
        print(f"{r['score']:10.4f}  {r['label'] or '-':<8} {r['path']}")
