#!/usr/bin/env bash
# Nightly incremental scan: only new or changed files are scored; yesterday's rows are reused.
#
#   AIISCAN_ROOTS    folders to scan (space-separated)            e.g. "/srv/uploads /srv/inbox"
#   AIISCAN_WEIGHTS  the head (prefix or name in weights/)         e.g. /opt/aiiscan/weights/mine
#   AIISCAN_OUT      folder for reports                            e.g. /var/lib/aiiscan
#   AIISCAN_BIN      the aiiscan command (default: aiiscan on PATH)
#
# Exit codes follow `aiiscan scan`: 0 all scored, 3 some files errored (report still written),
# 2 configuration error, 130 interrupted (the next run resumes it).
set -euo pipefail
: "${AIISCAN_ROOTS:?set AIISCAN_ROOTS}" "${AIISCAN_WEIGHTS:?set AIISCAN_WEIGHTS}" "${AIISCAN_OUT:?set AIISCAN_OUT}"
BIN="${AIISCAN_BIN:-aiiscan}"
mkdir -p "$AIISCAN_OUT"
today="$AIISCAN_OUT/report-$(date -u +%Y%m%d).parquet"
latest="$AIISCAN_OUT/latest.parquet"

args=(scan $AIISCAN_ROOTS -o "$today" --weights "$AIISCAN_WEIGHTS" --quiet --html "${today%.parquet}.html")
[ -f "$latest" ] && args+=(--incremental "$latest")
[ -d "$today.parts" ] && args+=(--resume)   # yesterday's run was interrupted: continue it
[ -f "$today" ] && args+=(--overwrite)      # a second run today replaces today's report

rc=0
"$BIN" "${args[@]}" || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; then
  ln -sfn "$(basename "$today")" "$latest.tmp" && mv -T "$latest.tmp" "$latest"
fi
exit "$rc"
