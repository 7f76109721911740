"""The chain's benchmarks: ``callstack bench`` runs :mod:`benchmarks.chain_bench`; the others run as
``python -m benchmarks.<name>`` (code_execution_bench, latency_bench, load, tracing_cost)."""
