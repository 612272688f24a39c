"""`vaswani-train`: the training loop of `vaswani_hf.training.loop` (setup → train → finish, §5) as a command, which
ends on a user's mistake with one line. `--help` shows its usage and every run-config key."""

from vaswani_hf.training.loop import main

if __name__ == "__main__":
    raise SystemExit(main())
