"""Learning suites: ``memrl repro SUITE`` trains a matrix of task x core x seq len x seed and
writes a report (see memrl.repro.suite for the YAML, memrl.repro.cell for one cell's numbers,
memrl.repro.report for the aggregation)."""
