"""One module per ``attnlab`` subcommand; each defines ``register(subparsers, common)``."""
