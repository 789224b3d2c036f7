"""The benchmark: ``python -m bench.run --sizes 1k,10k,100k`` (``make bench``). See BENCHMARKS.md."""
