"""The ``annot`` command line: parse, call one library function, print."""
