"""Host side of the ADB-driven on-device profiler.

Reading benchmark_model output: ``logline`` (shared lexical facts), ``parse`` (timings, memory,
runs), ``coverage`` (delegate coverage), ``op_profile`` (per-operator tables and CSV).
Measurements: ``measure`` (latency, memory), ``power``, ``thermal``, ``model_check``.
Jobs: ``device_job`` (one device, fault handling), ``host_job`` (host LiteRT, labelled host),
``devices`` (which phones, their facts), ``api.profile`` (every device concurrently, one report),
``from_log``. Results: ``results`` (versioned, resumable profile.json) and ``reports`` (table, CSV, HTML).
"""
