"""One module per execution backend; each exposes ``Runner(op).run(context) -> dict`` and ``kill()``."""
