"""Exchange ActiveSync wire layer (MS-ASWBXML, later MS-ASCMD/MS-ASHTTP):
WBXML bytes in, element trees out, and back.  No store, no Trio, no sockets."""
