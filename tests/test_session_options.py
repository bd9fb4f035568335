"""lam_trt.providers.session_options: the settings every lam-trt session runs with.

The memory they save is measured by bench/bench_memory.py (not by a test): ONNX Runtime's memory
pattern, planned after a first run, is allocated beside the arena that run filled (about twice the
memory from the second chunk on), and its default order runs a reverse pass's Shape(x) late,
keeping the forward tensor x alive until then.
"""
from __future__ import annotations

import onnxruntime as ort

from lam_trt.providers import session_options


def test_no_memory_pattern_and_shapes_read_early():
    opts = session_options(2)
    assert opts.enable_mem_pattern is False
    assert opts.execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.set_denormal_as_zero") == "1"
