"""What users start: the `mobile-compress` command line, recipes and their stages, deploy and the demo.

The top layer: it may import every package below it (models, the mobile_compress core, converters,
android_harness, profiler), and nothing imports it.
"""
