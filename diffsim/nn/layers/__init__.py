"""Layer modules, one family per file."""
