"""The vault core, one module per responsibility; `pcii_vault.vault.Vault` assembles them."""
