"""Tools on top of the library: benchmarks, budget tuning, method comparison, the demo, reports,
pictures and ONNX export."""
