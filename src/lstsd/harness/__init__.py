"""Research harness for lstsd: datasets, models, training loops and experiment tooling."""
