"""`python -m pcii_vault` runs the `pcii` command line."""

from pcii_vault.cli.app import main

main()
