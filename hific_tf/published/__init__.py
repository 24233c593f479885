"""The paper's published models: the graph runner, `.tfci` files, weight import and graph safety."""
