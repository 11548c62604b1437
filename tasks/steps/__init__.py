"""The pipeline steps behind `edgeops step <name>`: each module has `run(ctx) -> <record>`."""
