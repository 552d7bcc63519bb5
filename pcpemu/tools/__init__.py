"""The tools on top: the report, sweeps and the command line."""
