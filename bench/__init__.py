"""Benchmarks: `twinops bench NAME --json`. Each module's `run(*, quick=False) -> dict` returns its figures,
including its side-by-side baseline measured in the same run (machines are noisy; compare ratios)."""
