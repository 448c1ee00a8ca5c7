"""netkitd: the warm engine (a fork server on a unix socket) and the protocol its clients speak."""
