"""Reports: the schema, the writers, the one reader (a report is untrusted input), the HTML page.

Imports no torch: ``aiiscan report`` and the scan's writer stage start fast.
"""
