"""`python -m workflows` (and `torchrun -m workflows train ...`): the same command line as `mobile-compress`."""
from workflows.cli import main

raise SystemExit(main())
