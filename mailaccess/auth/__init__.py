"""Authentication shared by every protocol: the login service and its parts.

- ``service.py``: ``LoginService`` (``login``, ``throttle``, ``record``), made
  once per process (server/app.py puts it in the ServerContext);
- ``hashing.py``: argon2id parameters, verification, rehash;
- ``pool.py``: the bounded verification pool (``Unavailable`` beyond it);
- ``cache.py``: recently verified credentials, HMAC-keyed, in memory only;
- ``penalty.py``: the failed-login delay per address and user name.

No protocol and no socket here: callers pass the client's address as text.
Import ``mailaccess.auth.service`` for the service: this package's own
import stays light, because accounts.py (which the service uses) hashes with
``hashing.py``.
"""
