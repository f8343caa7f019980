"""Third-party code vendored for the benchmarks (see each file's header for provenance)."""
