"""The `inferd` command line: `inferd serve`, and more subcommands as they are built."""
