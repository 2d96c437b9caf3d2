"""One module per `styledrop` subcommand: `add_parser(subparsers)` and `run(args)`."""
