"""`python -m engine` runs the `dragondb` command."""

from engine.cli import main

raise SystemExit(main())
