"""`python -m bifrost.cli`, the same as the `bifrost` command."""

from bifrost.cli import main

main()
