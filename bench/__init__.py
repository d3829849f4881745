"""securecomm's benchmarks: `make bench` (never part of `make test`, except a smoke run)."""
