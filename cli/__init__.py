"""The `styledrop` command line: `cli.main` builds the parser; one module per subcommand.

Each subcommand module has `add_parser(subparsers)` and `run(args)`. This is the only
package that imports `worker`, `ui`, `bench`, `zoo_build` and `styledrop` together; heavy
libraries (JAX, PyTorch) are imported inside the commands, so `--help` is instant.
"""
