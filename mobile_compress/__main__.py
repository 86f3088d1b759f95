"""`python -m mobile_compress` (and `torchrun -m mobile_compress train ...`)."""
from mobile_compress.cli import main

raise SystemExit(main())
