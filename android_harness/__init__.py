"""Device side of the profiler: the runner script and the code that drives it (profiler issue)."""
