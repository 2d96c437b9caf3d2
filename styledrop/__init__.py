"""StyleDrop method: fine-tuning, rounds, evaluation, the embedded model zoo and the CLI."""
