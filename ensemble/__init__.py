"""Distributed ensembles on Ray, streaming statistics, reports, and the ``closure`` CLI."""
