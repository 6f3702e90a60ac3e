"""Benchmarks: one harness (timing, the sgemm rate through Caffe, the report
header) and each benchmark's measurement and report; tools/bench_*.py parse
their flags and call these."""
