"""HTML reports of a run (run_report), shared chart helpers and the history section."""
