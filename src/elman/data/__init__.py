"""Data sources. One module per source; ``text`` holds the shared text-to-ids path."""
