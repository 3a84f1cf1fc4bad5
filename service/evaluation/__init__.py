"""Benchmark evaluation on DAVIS-layout data: J / F metrics, the "first" and "best" protocols,
model and baseline runs, and per object -> sequence -> dataset -> overall aggregation."""
