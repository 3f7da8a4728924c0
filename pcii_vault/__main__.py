"""`python -m pcii_vault` runs the `pcii` command line."""

from pcii_vault.cli.app import main

if __name__ == "__main__":  # not when a `pcii serve` worker process is spawned
    main()
