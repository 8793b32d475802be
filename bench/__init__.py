"""FundedFlow benchmarks: `python -m bench.run [--quick] [--only ...]` (see docs/performance.md)."""
