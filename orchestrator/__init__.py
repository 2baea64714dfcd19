"""The sweep: configuration, planning, runners (the only Ray user), the result store and the CLI."""
