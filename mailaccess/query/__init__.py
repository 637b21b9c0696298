"""One query engine for IMAP SEARCH/SORT/THREAD, JMAP Email/query and
ActiveSync Search: protocols build a :mod:`.model` query, :mod:`.engine`
evaluates it over candidates (``search``), :mod:`.sort` orders
(``sort.sort``) and :mod:`.thread` threads the result."""
from . import engine, model, sort, thread
from .engine import search
from .sort import SortKey
from .thread import Thread, thread_orderedsubject, thread_references

__all__ = ["model", "engine", "sort", "thread", "search", "SortKey", "Thread",
           "thread_orderedsubject", "thread_references"]
