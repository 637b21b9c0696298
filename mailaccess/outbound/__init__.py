"""Sans-IO rules of outbound mail: which addresses an account may send
from (addresses.py), the SMTP envelope of a message (envelope.py), when and
how to answer automatically (autoreply.py, RFC 3834) and the retry schedule
(retry.py).  No Trio, no sockets, no store: values in, values out."""
