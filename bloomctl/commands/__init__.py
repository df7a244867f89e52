"""Sub-commands of bloomctl, one module each."""
