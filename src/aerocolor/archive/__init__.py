"""Whole archives: many files colorized as one job, in this process or on a Ray cluster.

A job has a manifest (``colorize-manifest.jsonl``) so that a rerun skips verified outputs, can give
the frames of one flight shared colour statistics (``--consistent``), and catalogues what it made:
a VRT mosaic of the georeferenced outputs and a STAC Item per output.
"""

from .job import ArchiveOptions, JobSummary, run_archive

__all__ = ["ArchiveOptions", "JobSummary", "run_archive"]
