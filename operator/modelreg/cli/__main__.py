"""`python -m modelreg.cli`: the `modelreg` command."""

from modelreg.cli.main import main

main()
