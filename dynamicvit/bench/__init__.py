"""Speed and cost of a model against its dense original: interleaved throughput and latency (throughput.py)
with the forwards it times (forwards.py) and the timing helpers (timing.py), the keep rate for a target
(tune.py) and the per-image MAC report (flops_report.py)."""
