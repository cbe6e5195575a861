"""What the commands print: records built once (`records`), tables for a terminal (`tables`),
keys as text (`text`) and stored values rendered by `--mode` (`values`)."""
