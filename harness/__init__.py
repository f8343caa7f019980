"""Orchestration used by the demo, the end-to-end tests and the benchmarks.

It starts the local OKX simulator and the collector as subprocesses and drives Snakemake
through its CLI, exactly as a user would. Not part of the product: `feeder` and `collector`
never import it, and it never imports the simulator's internals (it talks to it over its CLI).
"""
