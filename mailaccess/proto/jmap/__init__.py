"""JMAP wire layer (RFC 8620, RFC 8621, RFC 8887): JSON in, typed requests
out; method results in, JSON out.  No store, no Trio, no sockets."""
