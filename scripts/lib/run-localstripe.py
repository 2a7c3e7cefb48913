"""Runs localstripe (a stateful fake of Stripe's API) with its store in a file of our own.

localstripe keeps everything it knows in one fixed file of the system's temporary directory;
two of them on one machine (two checkouts, CI beside a session) would overwrite each other's.
This launcher points the store at LOCALSTRIPE_STORE, then starts the server with the arguments
it was given (`--port N`, `--from-scratch`). Run by scripts/local-stack.
"""

import os
import pickle

from localstripe import resources, server

STORE = os.environ["LOCALSTRIPE_STORE"]


def dump_to_disk(self):
    tmp = STORE + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, STORE)


def try_load_from_disk(self):
    try:
        with open(STORE, "rb") as f:
            old = pickle.load(f)
    except FileNotFoundError:
        return
    self.clear()
    self.update(old)


resources.Store.dump_to_disk = dump_to_disk
resources.Store.try_load_from_disk = try_load_from_disk
server.start()
