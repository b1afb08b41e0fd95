"""The command line: the parser and shared Context, one module per subcommand, and the launcher."""
