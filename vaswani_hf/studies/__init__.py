"""Studies: several models trained and measured side by side, each reproduced by one command."""
