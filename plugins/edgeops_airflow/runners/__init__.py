"""One module per execution backend, each exposing ``Runner(op).run(context) -> dict`` and ``kill()``.

Files are named ``*_runner.py`` so that none shadows a real package (``docker``, ``kubernetes``).
"""
