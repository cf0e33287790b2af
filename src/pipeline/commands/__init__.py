"""The bodies of the `lakehouse` commands, one module a topic, each `cmd_<name>(args) -> int`
(the exit status); pipeline.cli parses the arguments and dispatches here. Heavy imports (Spark,
Great Expectations) stay inside the functions, so `--help` answers without them."""
