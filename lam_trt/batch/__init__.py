"""Batch LAM over many images and windows: inputs, windows, rows, resume, summary and QA gates.

One row per (image, window) goes to DIR/results.csv or DIR/results.jsonl. Rows are appended with an
fsync each, so an interrupted run loses at most the row it was writing; DIR/run.json records the
model and parameters, and a rerun with the same ones skips every row already in the file. Rows are
keyed by the image's resolved path and content sha256, so one file named two ways is one image and
a changed file is computed again. A bad image or window becomes a row with its error: the batch never
stops for one; rows that failed for an environment reason (error_kind "environment": no memory, an
unusable provider) are retried by the next run, whose row then stands in their place.

inputs (the images), windows (which windows of each), rows (one row, its parameters, which rows
stand), results_log (the file), gates (summary and QA gates), run (plan, then run: locally or, through
lam_trt.scaleout, on Ray).
"""

from lam_trt.batch.gates import Gates, summarise
from lam_trt.batch.inputs import expand_inputs
from lam_trt.batch.results_log import ResultsLog
from lam_trt.batch.rows import COLUMNS, BatchParams, image_rows
from lam_trt.batch.run import BatchOutcome, BatchPlan, plan_batch, run_batch
from lam_trt.batch.windows import WindowSpec, read_windows_csv

__all__ = ["BatchOutcome", "BatchParams", "BatchPlan", "COLUMNS", "Gates", "ResultsLog", "WindowSpec",
           "expand_inputs", "image_rows", "plan_batch", "read_windows_csv", "run_batch", "summarise"]
