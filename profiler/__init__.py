"""Host side of the ADB-driven on-device profiler (profiler issue)."""
