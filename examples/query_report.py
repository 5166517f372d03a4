"""Query a scan report with DuckDB (SQL straight on the Parquet file) or pandas.

    python examples/query_report.py report.parquet
"""

from __future__ import annotations

import json
import sys

import pyarrow.parquet as pq


def main(report: str) -> None:
    meta = json.loads(pq.read_schema(report).metadata[b"aiiscan"])  # the scan's own record
    print(f"model {meta['model_id']}, threshold {meta['threshold']} ({meta['threshold_source']})")
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        con = duckdb.connect()
        print("flagged per folder (DuckDB):")
        for row in con.execute(
            """SELECT regexp_replace(path, '/[^/]*$', '') AS folder,
                      count(*) FILTER (WHERE label = 'ai') AS flagged, count(*) AS files
               FROM read_parquet(?) GROUP BY folder ORDER BY flagged DESC, folder""",
            [report],
        ).fetchall():
            print("  ", *row)
        top = con.execute(
            "SELECT path, score, provenance_hint FROM read_parquet(?) WHERE status = 'ok' "
            "ORDER BY score DESC LIMIT 5", [report]).fetchall()
    else:
        import pandas as pd

        df = pd.read_parquet(report)
        top = df[df.status == "ok"].nlargest(5, "score")[["path", "score", "provenance_hint"]].values.tolist()
    print("most suspicious:")
    for path, score, hint in top:
        print(f"   {score:9.4f}  {path}  {hint or ''}")

    import pandas as pd

    df = pd.read_parquet(report)
    errors = df[df.status == "error"][["path", "error"]]
    print(f"{len(errors)} files could not be scored")
    declared = df[df.provenance_hint == "declared-ai"]
    print(f"{len(declared)} files declare AI generation in their metadata")


if __name__ == "__main__":
    main(sys.argv[1])
