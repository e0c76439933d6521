"""`python -m ivr`: the same command line as `ivr`."""

from ivr.cli import main

raise SystemExit(main())
