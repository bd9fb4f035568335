"""One module per CLI command group; each has ``register(app)``. cli.py assembles them."""
