"""Docker's remote network driver protocol, served by netkitd (see handlers.py)."""
