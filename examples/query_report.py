"""Query a scan report with SQL, straight on the Parquet file: DuckDB comes with the base install.

    python examples/query_report.py report.parquet
"""

from __future__ import annotations

import json
import sys

import duckdb
import pyarrow.parquet as pq


def main(report: str) -> None:
    meta = json.loads(pq.read_schema(report).metadata[b"aiiscan"])  # the scan's own record
    print(f"model {meta['model_id']}, threshold {meta['threshold']} ({meta['threshold_source']})")
    con = duckdb.connect()
    con.register("r", con.read_parquet(report))  # the report as a table named r
    print("flagged per folder:")
    for row in con.execute(
        """SELECT regexp_replace(path, '/[^/]*$', '') AS folder,
                  count(*) FILTER (WHERE label = 'ai') AS flagged, count(*) AS files
           FROM r GROUP BY folder ORDER BY flagged DESC, folder""").fetchall():
        print("  ", *row)
    print("most suspicious:")
    for path, score, hint in con.execute(
            "SELECT path, score, provenance_hint FROM r WHERE status = 'ok' ORDER BY score DESC LIMIT 5"
    ).fetchall():
        print(f"   {score:9.4f}  {path}  {hint or ''}")
    (errors,) = con.execute("SELECT count(*) FROM r WHERE status = 'error'").fetchone()
    print(f"{errors} files could not be scored")
    (declared,) = con.execute("SELECT count(*) FROM r WHERE provenance_hint = 'declared-ai'").fetchone()
    print(f"{declared} files declare AI generation in their metadata")
    # pandas users: con.execute("SELECT * FROM r").df(), or pandas.read_parquet(report).


if __name__ == "__main__":
    main(sys.argv[1])
