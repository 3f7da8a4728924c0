"""pcii-vault."""
