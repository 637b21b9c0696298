"""One query engine for IMAP SEARCH/SORT/THREAD, JMAP Email/query and
ActiveSync Search: protocols build a :mod:`.model` query, :mod:`.engine`
evaluates it over candidates, :mod:`.sort` orders and :mod:`.thread`
threads the result."""
from . import model
from .engine import search
from .sort import SortKey, sort
from .thread import Thread, format_thread, thread_orderedsubject, thread_references

__all__ = ["model", "search", "sort", "SortKey", "Thread", "format_thread",
           "thread_orderedsubject", "thread_references"]
