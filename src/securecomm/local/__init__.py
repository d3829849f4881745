"""The single-machine network: one data directory holding every party's home
(:mod:`.home`: ``init``) and their processes (:mod:`.stack`: ``up``). No service imports it."""
