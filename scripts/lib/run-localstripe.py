"""Runs localstripe (a stateful fake of Stripe's API) with its store in memory only.

localstripe keeps everything it knows in one fixed file of the system's temporary directory and
writes the whole of it again after every change: two of them on one machine (two checkouts, CI
beside a session) would overwrite each other's, and a long run (the chaos run's ten minutes) makes
every write slower than the last. The processor's state is the tests' and runs' own, so this
launcher keeps it in memory: it starts empty and ends with the process. Run by scripts/local-stack
with the arguments it was given (`--port N`).
"""

from localstripe import resources, server


def dump_to_disk(self):
    pass


def try_load_from_disk(self):
    pass


resources.Store.dump_to_disk = dump_to_disk
resources.Store.try_load_from_disk = try_load_from_disk
server.start()
