"""``make bench``: every benchmark that runs without the shared photo sets, one after the other."""

from . import matching

print("== matching one face against the gallery")
matching.main()
